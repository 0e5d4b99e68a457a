"""The text's case study: plant-disease image classification (training and evaluation)."""
