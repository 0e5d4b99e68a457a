"""Chapter 7, the text's Keras feed-forward net for XOR: its Lightning twin and the runner."""
