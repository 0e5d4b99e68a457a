"""dlrepro: a deep-learning curriculum and its case study as one reproducible pipeline.

"The text", throughout the code and the docs, is the deep-learning textbook the curriculum comes
from: its chapters (perceptron to a Keras feed-forward net) and its plant-leaf CNN case study,
whose code and printed outputs dlrepro reproduces and checks (docs/curriculum.md).
"""

__version__ = "0.1.0"
