"""Thin DVC stage entry points (`python -m dlrepro.stages.<name>`).

Each loads and validates params.yaml, checks the tracking store, calls the modules that compute,
writes its declared outputs and logs to MLflow.
"""
