"""Datasets: the text's logic gates (and, later, leaf images)."""
