"""One MLflow run per stage execution: its experiment, name and tags, its params and inputs, and
its outcome (metrics, series and output files).

One MLflow experiment per stage family (`dlrepro-data`, `dlrepro-curriculum`, ...); runs from the
same code and params share the tag `dlrepro.pipeline_id`, and `dvc exp run` adds `dvc.exp_name`,
so one `dvc repro` can be filtered in the UI with `tags.dlrepro.pipeline_id = '...'`. An
interrupted train run is found again by its fingerprint and continued, not duplicated; a run
whose process was killed is marked FAILED when its stage next starts (`end_abandoned`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, redirect_stdout, suppress
from pathlib import Path
from typing import Any

from dlrepro.config.load import flatten
from dlrepro.hashing import dvc_md5
from dlrepro.paths import repo_root
from dlrepro.tracking.datasets import log_cache_splits
from dlrepro.tracking.faults import give_up, lost
from dlrepro.tracking.store import EXPERIMENT_PREFIX, store_root, tracking_uri

# MLflow 3's experiment kind for classic training (its UI otherwise treats experiments as GenAI).
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
SYSTEM_METRICS_INTERVAL_S = 1.0  # a 90-second fit gives a curve of 90 points
# Tag of a train run: what it computes (dlrepro.stages.train.fingerprint), to find an
# interrupted run again and continue it rather than start a second one.
FINGERPRINT_TAG = "dlrepro.fingerprint"
# Tags of every stage run (and its child runs): its recipe, and the process that runs it,
# `host:pid:start time`, which tells a run left RUNNING by a killed process from a live one.
RECIPE_TAG = "dlrepro.recipe"
PROCESS_TAG = "dlrepro.process"
ENDED_TAG = "dlrepro.ended_by"  # why a later start ended the run


def git_commit() -> str:
    """The code version that run tags and registry versions record ("unknown" outside git)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo_root(), capture_output=True, text=True
        )
    except OSError:
        return "unknown"
    return head.stdout.strip() if head.returncode == 0 else "unknown"


def run_tags(stage: str, inputs: list[Path]) -> dict[str, str]:
    """Tags every stage run carries: code version, DVC stage and experiment, input hashes."""
    root = repo_root()
    params = root / "params.yaml"
    commit = git_commit()
    pipeline = hashlib.md5(commit.encode() + (params.read_bytes() if params.exists() else b""))
    tags = {
        "dlrepro.stage": stage,
        "dlrepro.git_commit": commit,
        "dlrepro.pipeline_id": pipeline.hexdigest()[:12],
        "dvc.stage": os.environ.get("DVC_STAGE", ""),
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
    for path in inputs:
        rel = Path(path).resolve().relative_to(root).as_posix()
        tags[f"dvc.md5.{rel}"] = dvc_md5(path)
    return tags


def experiment_id(family: str) -> str:
    """Get or create the family's experiment; embedded runs keep artifacts beside the store.

    Every experiment is marked as model training (EXPERIMENT_KIND), so MLflow 3 knows it is not
    a GenAI experiment; an experiment created before the mark gets it on its next run.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    name = EXPERIMENT_PREFIX + family
    found = mlflow.get_experiment_by_name(name)
    if found is None:
        location = None
        if tracking_uri().startswith("sqlite:"):
            location = (store_root() / "mlruns").as_uri()
        try:
            return mlflow.create_experiment(
                name, artifact_location=location, tags=dict([EXPERIMENT_KIND])
            )
        except MlflowException as err:
            # Two queued experiments starting at once both found none; the other one won.
            if err.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        found = mlflow.get_experiment_by_name(name)
        assert found is not None, f"experiment {name!r}: neither created nor found"
    if found.tags.get(EXPERIMENT_KIND[0]) != EXPERIMENT_KIND[1]:
        mlflow.MlflowClient().set_experiment_tag(found.experiment_id, *EXPERIMENT_KIND)
    return found.experiment_id


def run_name(stage: str, recipe: str | None = None) -> str:
    """What the runs table shows: the stage, its recipe, and the DVC experiment when there is
    one, e.g. `train · tuned · sulky-seal`."""
    parts = [stage, recipe, os.environ.get("DVC_EXP_NAME")]
    return " · ".join(part for part in parts if part)


@contextmanager
def stage_run(
    stage: str,
    family: str,
    params: Mapping[str, Any],
    inputs: list[Path],
    recipe: str | None = None,
    splits: list[Path] | None = None,
    system_metrics: bool = False,
    continue_run: str | None = None,
    tags: Mapping[str, str] | None = None,
    contexts: Mapping[str, str] | None = None,
) -> Iterator[Any]:
    """An MLflow run for one stage execution (of `recipe`, for a per-recipe stage), with the
    resolved config logged as params, `splits` (cache split folders it reads) logged as
    dataset inputs (`log_cache_splits`), and with `system_metrics`, CPU, memory (and GPU where
    there is one) sampled by MLflow's own monitor while the run lasts. `continue_run`: the id of
    an interrupted run to carry on (a resumed fit stays one run), when the store still has it.
    `tags`: added to the usual ones (`run_tags`). `contexts`: a split's role in this run where it
    is not its usual one (CONTEXTS), e.g. {"val": "training"} for a fit that learns from val.

    Earlier runs of the stage left RUNNING by a killed process are ended first (`end_abandoned`;
    never the one continued). A run whose block raises ends FAILED; when the error shows the
    server gone or stalled, ending it tries once, briefly (`faults.give_up`), and a run that
    cannot be ended is left to the next start."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    if system_metrics:
        mlflow.set_system_metrics_sampling_interval(SYSTEM_METRICS_INTERVAL_S)
    family_id = experiment_id(family)
    continued = continue_run if continue_run and _run_in(family_id, continue_run) else None
    end_abandoned(family_id, stage, recipe, keep=continued)
    own = {PROCESS_TAG: this_process(), **({RECIPE_TAG: recipe} if recipe else {})}
    run = mlflow.start_run(
        run_id=continued,
        experiment_id=None if continued else family_id,
        run_name=run_name(stage, recipe),
        tags={**run_tags(stage, inputs), **own, **(tags or {})},
        log_system_metrics=system_metrics,
    )
    try:
        mlflow.log_params({k: _param(v) for k, v in flatten(params).items()})
        log_cache_splits(splits or [], contexts)
        yield run
    except BaseException as err:
        if isinstance(err, Exception) and lost(err):
            give_up()
        with suppress(Exception):  # the stage's own error is the one to report
            _end(run.info.run_id, "FAILED")
        raise
    _end(run.info.run_id, "FINISHED")


def _end(run_id: str, status: str) -> None:
    """End the run if it is still the active one (as mlflow's own `with start_run()` does)."""
    import mlflow

    active = mlflow.active_run()
    if active is not None and active.info.run_id == run_id:
        mlflow.end_run(status)


def this_process() -> str:
    """PROCESS_TAG's value for this process: `host:pid:start time` (seconds since the epoch)."""
    import psutil

    return f"{socket.gethostname()}:{os.getpid()}:{psutil.Process().create_time():.2f}"


def end_abandoned(experiment: str, stage: str, recipe: str | None, keep: str | None) -> list[str]:
    """End as FAILED, with ENDED_TAG saying why, the runs of `stage` (and `recipe`) that are
    still RUNNING though the process that ran them is gone (killed, or lost with its machine),
    except `keep` (a run being resumed); returns their ids. One search per stage start. A run of
    another host, or without PROCESS_TAG, is left as it is: whether it still runs cannot be
    told from here."""
    import mlflow

    client = mlflow.MlflowClient()
    query = f"attributes.status = 'RUNNING' and tags.`dlrepro.stage` = '{stage}'"
    if recipe:
        query += f" and tags.`{RECIPE_TAG}` = '{recipe}'"
    ended = []
    for run in client.search_runs([experiment], query, max_results=1000):
        process = run.data.tags.get(PROCESS_TAG)
        if run.info.run_id == keep or process is None or _process_lives(process):
            continue
        why = f"process {process} ended without ending the run; a later start of the stage did"
        client.set_tag(run.info.run_id, ENDED_TAG, why)
        with redirect_stdout(io.StringIO()):  # its "View run" link would read as this stage's
            client.set_terminated(run.info.run_id, "FAILED")
        ended.append(run.info.run_id)
    return ended


def _process_lives(tag: str) -> bool:
    """Whether the process of a PROCESS_TAG still runs: same host, and the pid's process started
    when the tagged one did (within a second: a reused pid belongs to a later process)."""
    import psutil

    try:
        host, pid, started = tag.rsplit(":", 2)
        if host != socket.gethostname():
            return True  # cannot be told from here
        process = psutil.Process(int(pid))
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return abs(process.create_time() - float(started)) < 1.0
    except psutil.NoSuchProcess:
        return False
    except (ValueError, psutil.Error):
        return True


def interrupted_run(family: str, fingerprint: str) -> str | None:
    """The latest run of `family` with this fingerprint (FINGERPRINT_TAG) that did not finish:
    the MLflow run a resumed fit continues. Looked up in the store, so no run id has to live in
    the stage's outputs (where it would make two clones' bytes differ)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri())
    experiment = client.get_experiment_by_name(EXPERIMENT_PREFIX + family)
    if experiment is None:
        return None
    found = client.search_runs(
        [experiment.experiment_id],
        f"tags.`{FINGERPRINT_TAG}` = '{fingerprint}' and attributes.status != 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return found[0].info.run_id if found else None


def _run_in(experiment: str, run_id: str) -> bool:
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        return mlflow.MlflowClient().get_run(run_id).info.experiment_id == experiment
    except MlflowException as err:  # not in this store (another server, a deleted run)
        if lost(err):
            raise
        return False


def _param(value: Any) -> str:
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


def log_outcome(
    run_id: str,
    metrics: Mapping[str, Any],
    series: Mapping[str, list[tuple[int, float]]],
    artifacts: list[Path],
) -> None:
    """Scalar metrics (bools as 0/1), step series, and the stage's output files."""
    import mlflow
    from mlflow.entities import Metric

    client = mlflow.MlflowClient()
    scalars = {
        key: float(value)
        for key, value in flatten(metrics).items()
        if isinstance(value, int | float) and value == value  # drops NaN, keeps bools
    }
    batch = [Metric(key, value, 0, 0) for key, value in scalars.items()]
    batch += [Metric(key, float(v), 0, step) for key, pts in series.items() for step, v in pts]
    for start in range(0, len(batch), 1000):  # MLflow's per-request limit
        client.log_batch(run_id, metrics=batch[start : start + 1000])
    root = repo_root()
    for path in map(Path, artifacts):
        rel = path.resolve().relative_to(root)  # same layout in MLflow as in the repository
        if path.is_dir():
            client.log_artifacts(run_id, str(path), rel.as_posix())
        else:
            client.log_artifact(run_id, str(path), rel.parent.as_posix())
