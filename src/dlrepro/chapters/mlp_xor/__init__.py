"""Chapter 2, a multi-layer perceptron for XOR: the text's numpy MLP, its torch twin, the runner."""
