"""Chapter 4, activation functions: the text's numpy functions and the runner."""
