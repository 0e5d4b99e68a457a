"""Errors that reach the user as one line (see `dlrepro.cli.run_stage`), never as a traceback."""


class DlreproError(Exception):
    """Base class: its message is the whole user-facing explanation."""


class ConfigError(DlreproError):
    """params.yaml (or an override) holds a value of the wrong type, range or name."""


class TrackingError(DlreproError):
    """The MLflow tracking store cannot be reached."""


class DataError(DlreproError):
    """An input dataset is missing or cannot be used."""


class DivergedError(DlreproError):
    """A fit's loss stopped being a finite number: its settings ruin it, so nothing is kept."""
