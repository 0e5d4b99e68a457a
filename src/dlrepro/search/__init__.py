"""Hyperparameter search: an Optuna study (ask/tell, RDB storage) whose every trial is a DVC
experiment run by DVC's queue, tracked as MLflow runs nested under the study's run.

`space` reads a search file, `experiments` talks to DVC, `study` is the resumable driver,
`summary` the MLflow side and the report, `promote` turns a trial into a recipe, `commands`
the `dlrepro search` subcommands.
"""
