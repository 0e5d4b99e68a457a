"""The driver: an Optuna study (ask/tell) whose trials are DVC experiments.

Every loop reads the study and DVC afresh, so the driver holds nothing a kill -9 could lose:
a finished experiment is told whenever a driver next looks, a lost or failed one is told FAIL
and its parameters enqueued again (at most MAX_RETRIES times), and trials are asked until the
study holds `trials` complete ones. Each driver tends only the trials it asked (their
`driver` attribute names its workspace), so drivers on several machines share one study on
PostgreSQL, each with its own DVC queue.

Proposals are a function of the study's history: the sampler is reseeded from
(`seed`, trials so far) before each ask, so a resumed study proposes what an uninterrupted one
would have, given the same results told.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dlrepro.errors import ConfigError, DlreproError
from dlrepro.search import experiments as exps
from dlrepro.search.space import Search

MAX_RETRIES = 2  # a parameter set whose experiment failed or was lost runs at most 3 times
# An experiment must look lost this long before it is: a worker starting it, or storing the
# result of one whose run has ended, takes a while on a busy machine.
LOST_GRACE_S = 60.0
POLL_S = 5.0
MAX_DUPLICATES = 50  # asks in a row that repeat a parameter set: the space is exhausted
SCHEMA_ATTEMPTS = 5  # opening a fresh shared database while another driver creates its tables


def storage_url(root: Path, given: str | None = None) -> str:
    """--storage, else OPTUNA_STORAGE, else `optuna.db` beside `mlflow.db` in the workspace."""
    return given or os.environ.get("OPTUNA_STORAGE") or f"sqlite:///{root / 'optuna.db'}"


def driver_id(root: Path) -> str:
    return f"{socket.gethostname()}:{root.resolve()}"


def make_sampler(search: Search, trials_so_far: int) -> Any:
    """The sampler for the next ask, seeded from (seed, trials so far) through numpy's
    SeedSequence: consecutive plain seeds give correlated first draws."""
    import numpy as np
    import optuna

    seed = int(np.random.SeedSequence([search.seed, trials_so_far]).generate_state(1)[0])
    return getattr(optuna.samplers, search.sampler)(seed=seed)


def load_study(search: Search, storage: str, create: bool = True) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the driver says what it does
    try:
        study = _open(search, storage, create)
    except KeyError:
        raise ConfigError(f"no study named {search.name!r} in {redacted(storage)}") from None
    except Exception as err:  # sqlalchemy's errors: a server down, a bad URL
        if isinstance(err, DlreproError):
            raise
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DlreproError(f"Optuna storage {redacted(storage)}: {first}") from None
    if study.direction.name.lower() != search.direction:
        raise ConfigError(f"study {search.name!r} was created to {study.direction.name.lower()}")
    return study


def _open(search: Search, storage: str, create: bool) -> Any:
    """The study, opened again while another driver is still creating a fresh database's
    tables (`schema_race`)."""
    import optuna

    direction: Any = search.direction

    def once() -> Any:
        if not create:
            return optuna.load_study(study_name=search.name, storage=storage)
        return optuna.create_study(
            study_name=search.name,
            storage=storage,
            direction=direction,
            sampler=make_sampler(search, 0),
            load_if_exists=True,
        )

    for attempt in range(1, SCHEMA_ATTEMPTS):
        try:
            return once()
        except Exception as err:
            if not schema_race(err):
                raise
            time.sleep(0.5 * attempt)
    return once()


def schema_race(err: Exception) -> bool:
    """Two drivers opening a fresh database at once both create Optuna's tables, and the
    slower one's CREATE or first INSERT fails (PostgreSQL: a duplicate key in pg_type or in
    Optuna's version table, or "already exists"). The tables exist by then: opening again
    succeeds."""
    kind = type(err).__name__
    return kind == "IntegrityError" or (kind == "ProgrammingError" and "already exists" in str(err))


def redacted(storage: str) -> str:
    """The storage URL without its password."""
    if "@" in storage and "://" in storage:
        scheme, rest = storage.split("://", 1)
        return f"{scheme}://…@{rest.rsplit('@', 1)[1]}"
    return storage


def propose(study: Any, search: Search) -> Any:
    """Ask the study for a trial, the sampler reseeded from the number of trials so far."""
    study.sampler = make_sampler(search, len(study.get_trials(deepcopy=False)))
    return study.ask(search.distributions())


class Driver:
    """One driver process of a study, in the workspace at `root`."""

    def __init__(self, root: Path, search: Search, study: Any, log: Callable[[str], None] = print):
        self.root, self.search, self.study, self.log = root, search, study, log
        self.me = driver_id(root)
        self.lost_since: dict[int, float] = {}
        self.in_queue = 0  # own experiments DVC lists as queued, at the last look
        self.workers_started = float("-inf")

    # ---- one pass --------------------------------------------------------------------------
    def mine(self, state: Any) -> list[Any]:
        return [
            t
            for t in self.study.get_trials(deepcopy=False, states=(state,))
            if t.user_attrs.get("driver") == self.me
        ]

    def reconcile(self, on_told: Callable[[Any, float], None]) -> int:
        """Tell what DVC finished; fail and re-enqueue what it lost. Returns own trials pending."""
        from optuna.trial import TrialState

        running = self.mine(TrialState.RUNNING)
        self.in_queue = 0
        if not running:
            return 0
        found = exps.experiments(
            self.root, {t.user_attrs.get("baseline", "") for t in running} - {""}
        )
        pending = 0
        for trial in running:
            name = trial.user_attrs.get("exp_name", "")
            state = exps.outcome(self.root, found.get(name))
            if state == exps.LOST:
                first = self.lost_since.setdefault(trial.number, time.monotonic())
                if time.monotonic() - first < LOST_GRACE_S:
                    pending += 1
                    continue
            self.lost_since.pop(trial.number, None)
            if state == exps.PENDING:
                pending += 1
                self.in_queue += found[name].state == "Queued"
            elif state == exps.DONE:
                try:
                    value = exps.metric(
                        self.root, name, self.search.metrics_file, self.search.metric
                    )
                except DlreproError as err:  # it would hold no number on a rerun either
                    self._fail(trial, name, str(err), retry=False)
                    continue
                # Its runs nested first: a driver killed between the two leaves the trial
                # running, and the next pass nests again (tags are idempotent) and tells it.
                on_told(trial, value)
                self.study.tell(trial.number, value)
                self.log(f"trial {trial.number} ({name}): {self.search.metric} {value:.4f}")
            else:
                self._fail(trial, name, state)
        return pending

    def _fail(self, trial: Any, name: str, why: str, retry: bool = True) -> None:
        from optuna.trial import TrialState

        self.study._storage.set_trial_user_attr(trial._trial_id, "failure", why)
        self.study.tell(trial.number, state=TrialState.FAIL)
        if why == exps.LOST:
            exps.forget(self.root, name)
        tries = int(trial.user_attrs.get("tries", 1))
        hint = f"`dvc queue logs {name}`" if why == exps.FAILED else "its worker died"
        if retry and tries <= MAX_RETRIES:
            self.study.enqueue_trial(
                trial.params, user_attrs={"tries": tries + 1, "retry_of": trial.number}
            )
            self.log(f"trial {trial.number} ({name}) {why} ({hint}); its parameters run again")
        elif not retry:
            self.log(f"trial {trial.number} ({name}): {why}; not run again")
        else:
            self.log(f"trial {trial.number} ({name}) {why} ({hint}) {tries} times; dropped")

    def ask_more(self, pending: int) -> int:
        """Queue trials while the study lacks some and this driver runs fewer than `jobs`."""
        from optuna.trial import TrialState

        queued = 0
        duplicates = 0
        live = (TrialState.COMPLETE, TrialState.RUNNING)
        while pending + queued < self.search.jobs:
            if len(self.study.get_trials(deepcopy=False, states=live)) >= self.search.trials:
                break
            trial = propose(self.study, self.search)
            # Read again: another driver may have asked meanwhile, from a sampler seeded alike.
            # Whoever sees the other's point drops its own (the later check always sees it).
            others = [
                t
                for t in self.study.get_trials(deepcopy=False, states=live)
                if t.number != trial.number
            ]
            if sum(t.number < trial.number for t in others) >= self.search.trials:
                self._drop(trial, "surplus")  # another driver asked the last one first
                break
            if any(t.params == trial.params for t in others):
                self._drop(trial, "duplicate")
                duplicates += 1
                if duplicates >= MAX_DUPLICATES:
                    raise DlreproError(f"study {self.search.name}: the space holds no new point")
                continue
            name = f"{self.search.name}-{trial.number}"
            overrides = self.search.trial_overrides(trial.params)
            attrs = {"driver": self.me, "exp_name": name, "overrides": overrides}
            for key, value in (attrs | {"baseline": exps.head(self.root)}).items():
                trial.set_user_attr(key, value)
            exps.queue(self.root, name, overrides, self.search.target)
            self.log(f"trial {trial.number} queued as {name}: {' '.join(overrides)}")
            queued += 1
        return queued

    def _drop(self, trial: Any, why: str) -> None:
        from optuna.trial import TrialState

        trial.set_user_attr("dropped", why)
        self.study.tell(trial, state=TrialState.FAIL)

    # ---- the loop --------------------------------------------------------------------------
    def run(self, on_told: Callable[[Any, float], None], poll_s: float = POLL_S) -> None:
        from optuna.trial import TrialState

        while True:
            pending = self.reconcile(on_told)
            queued = self.ask_more(pending)
            # Workers exit when DVC's queue is empty, and a killed one is not replaced: start
            # some for what waits (at most once a minute for what waited already).
            if queued or (self.in_queue and time.monotonic() - self.workers_started > 60):
                exps.start_workers(self.root, min(self.search.jobs, queued + self.in_queue))
                self.workers_started = time.monotonic()
            complete = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            if len(complete) >= self.search.trials and not self.mine(TrialState.RUNNING):
                return
            if not pending and not queued and not self.mine(TrialState.RUNNING):
                others = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                if not others:
                    raise DlreproError(
                        f"study {self.search.name}: no trial left to run and "
                        f"{len(complete)} of {self.search.trials} complete (see the failures)"
                    )
            time.sleep(poll_s)
