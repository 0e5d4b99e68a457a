"""Datasets: the text's logic gates, generated leaf images, and the ingest of image folders."""
