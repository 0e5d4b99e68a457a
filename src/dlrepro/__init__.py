"""dlrepro: a deep-learning curriculum and its case study as one reproducible pipeline."""

__version__ = "0.1.0"
