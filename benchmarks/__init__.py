"""Benchmarks of dlrepro: `python -m benchmarks` (`make bench`), one module per section.

Not part of the product package: run from the repository root, never imported by dlrepro.
"""
