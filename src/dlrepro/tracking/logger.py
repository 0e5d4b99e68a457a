"""Lightning's MLflow logger for the stages: writes a Ctrl-C cannot cut in half, that stop waiting
once the server is found gone or stalled, and child runs nested under the stage's run."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from functools import cache
from typing import Any

from dlrepro.tracking.faults import watched
from dlrepro.tracking.store import EXPERIMENT_PREFIX, tracking_uri


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """A Ctrl-C during the block takes effect when the block ends.

    Cut inside a SQLite write, MLflow's connection is left mid-transaction: its commit then fails
    with "database is locked" and the interrupt comes out as a tracking error with MLflow's
    logged traceback, not as the stage's one-line "interrupted". The Trainer writes an epoch's
    metrics right after saving its checkpoints, the moment a user (or tests/e2e/test_case_study.py)
    is likely to press Ctrl-C. Off the main thread, where no signal arrives, it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:  # delivered to the handler the block found (ignored if it ignores it)
            signal.raise_signal(signal.SIGINT)


@cache
def _interrupt_safe_logger() -> type:
    from pytorch_lightning.loggers import MLFlowLogger

    class InterruptSafeMLFlowLogger(MLFlowLogger):
        """Lightning's MLFlowLogger whose writes finish before a Ctrl-C takes effect; a write
        that finds the server gone or stalled makes the rest give up quickly (`watched`)."""

        def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
            with interrupts_deferred(), watched():
                super().log_metrics(metrics, step)

        def log_hyperparams(self, params: Any) -> None:
            with interrupts_deferred(), watched():
                super().log_hyperparams(params)

        def finalize(self, status: str = "success") -> None:
            with interrupts_deferred():
                if status != "failed":
                    with watched():
                        super().finalize(status)
                    return
                # Lightning is handling the fit's error: that one is what the stage reports.
                with suppress(Exception):
                    super().finalize(status)

    return InterruptSafeMLFlowLogger


def mlflow_logger(**kwargs: Any) -> Any:
    """pytorch_lightning's MLFlowLogger(**kwargs), with writes a Ctrl-C cannot cut in half."""
    return _interrupt_safe_logger()(**kwargs)


def lightning_logger(family: str, run_name: str, parent: Any) -> Any:
    """An MLFlowLogger for a child run, nested under the stage's run and carrying its tags."""
    inherited = {k: v for k, v in parent.data.tags.items() if k.startswith(("dlrepro.", "dvc."))}
    return mlflow_logger(
        experiment_name=EXPERIMENT_PREFIX + family,
        run_name=run_name,
        tracking_uri=tracking_uri(),  # always explicit: its own default is a file store
        tags={**inherited, "mlflow.parentRunId": parent.info.run_id},
    )
