"""Chapter 3, forward and backward propagation: the text's hand-written gradients and the runner."""
