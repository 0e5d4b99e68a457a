"""The text's algorithms in numpy, as it teaches them: short, readable, no torch."""
