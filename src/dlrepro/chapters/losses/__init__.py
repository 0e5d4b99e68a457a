"""Chapter 5, loss functions: the text's numpy losses and the runner."""
