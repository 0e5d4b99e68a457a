"""Chapter 1, the perceptron: the text's numpy class (text_code), its Lightning twin, the runner."""
