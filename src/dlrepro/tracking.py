"""MLflow for every stage: where runs go, the tags they carry, and a fail-fast reachability check.

Embedded default: `sqlite:///<repo>/mlflow.db` with artifacts in `<repo>/mlruns`, both ignored by
git, in the main repository even for a queued experiment (see `store_root`). Set
MLFLOW_TRACKING_URI to use a team server instead. One MLflow experiment per stage family
(`dlrepro-data`, `dlrepro-curriculum`, ...); runs from the same code and params share the tag
`dlrepro.pipeline_id`, and `dvc exp run` adds `dvc.exp_name`, so one `dvc repro` can be filtered
in the UI with `tags.dlrepro.pipeline_id = '...'`.

mlflow is imported inside the functions: it costs ~3 s, and a config error must fail before that.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import threading
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from dlrepro.config.load import flatten
from dlrepro.errors import TrackingError
from dlrepro.outputs import file_digest
from dlrepro.paths import repo_root

EXPERIMENT_PREFIX = "dlrepro-"
HEALTH_TIMEOUT_S = 5.0
# MLflow 3's experiment kind for classic training (its UI otherwise treats experiments as GenAI).
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
UI_MODE = "workflowType=machine_learning"


def store_root() -> Path:
    """The folder of the embedded store: DVC_ROOT when DVC runs the stage, else the repo root.

    The two differ for a queued experiment (`dvc exp run --queue` / `--temp`): its stages run in
    a throwaway copy under <repo>/.dvc/tmp/exps/, and DVC sets DVC_ROOT to the main repository,
    so the experiment's runs land in the main mlflow.db instead of being deleted with the copy.
    """
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    return repo_root()


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set, else the embedded SQLite store (see `store_root`)."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{store_root() / 'mlflow.db'}"


def ensure_reachable(uri: str | None = None) -> str:
    """Fail in one line, before any work, when a tracking server does not answer, or answers
    but refuses: besides `/health` (which MLflow answers even to a host it then refuses), one
    real API call, made as the stage's own calls will be (credentials from the environment)."""
    uri = uri or tracking_uri()
    if uri.startswith(("http://", "https://")):
        health = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(health, timeout=HEALTH_TIMEOUT_S) as response:
                if response.status != 200:
                    raise TrackingError(f"MLflow server {uri} answered HTTP {response.status}")
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise TrackingError(
                f"MLflow tracking server {uri} is not reachable ({reason}); start it, or unset "
                "MLFLOW_TRACKING_URI to track into the embedded mlflow.db"
            ) from None
        import mlflow
        from mlflow.exceptions import MlflowException

        try:
            mlflow.MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        except MlflowException as err:
            raise TrackingError(refusal(uri, err)) from None
    elif uri.startswith("sqlite:///"):
        db_dir = Path(uri.removeprefix("sqlite:///")).parent
        if not os.access(db_dir, os.W_OK):
            raise TrackingError(f"MLflow store {uri}: directory {db_dir} is not writable")
    return uri


def refusal(uri: str, err: BaseException) -> str:
    """One line for a tracking call the server refused (an MlflowException): the server, the
    status, and what to check."""
    message = " ".join(str(err).split())
    if not uri.startswith(("http://", "https://")):
        return f"MLflow store {uri}: {message[:200]}"
    code = re.search(r"error code (\d{3})", message)
    status = f"HTTP {code.group(1)}" if code else type(err).__name__
    body = message.split("Response body:", 1)[-1].strip(" '\"") if code else message
    return (
        f"MLflow tracking server {uri} refused the request ({status}: {body[:160]}); check its "
        "--allowed-hosts and your credentials (MLFLOW_TRACKING_USERNAME / _PASSWORD or "
        "MLFLOW_TRACKING_TOKEN), or unset MLFLOW_TRACKING_URI to track into the embedded mlflow.db"
    )


def file_md5(path: Path) -> str:
    return file_digest(path, "md5")


def dvc_md5(path: str | Path) -> str:
    """The md5 DVC records in dvc.lock: the file's md5, or for a folder the md5 of its listing
    (sorted {md5, relpath} entries as JSON) followed by '.dir'."""
    path = Path(path)
    if path.is_file():
        return file_md5(path)
    entries = [
        {"md5": file_md5(f), "relpath": f.relative_to(path).as_posix()}
        for f in sorted(path.rglob("*"), key=lambda p: p.relative_to(path).as_posix())
        if f.is_file()
    ]
    return hashlib.md5(json.dumps(entries, sort_keys=True).encode()).hexdigest() + ".dir"


def git_commit() -> str:
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
    if found.tags.get(EXPERIMENT_KIND[0]) != EXPERIMENT_KIND[1]:
        mlflow.MlflowClient().set_experiment_tag(found.experiment_id, *EXPERIMENT_KIND)
    return found.experiment_id


def ui_links(base_url: str, uri: str | None = None) -> list[str]:
    """One line per dlrepro experiment, and the registry, each a link that opens MLflow's UI in
    its model-training view. MLflow 3.17 takes the view from the `workflowType` query (else the
    browser's stored choice) and otherwise opens every experiment on its GenAI overview."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri or tracking_uri())
    experiments = client.search_experiments(filter_string=f"name LIKE '{EXPERIMENT_PREFIX}%'")
    base = base_url.rstrip("/")
    lines = [
        f"{e.name}: {base}/#/experiments/{e.experiment_id}?{UI_MODE}"
        for e in sorted(experiments, key=lambda e: e.name)
    ]
    return [*lines, f"model registry: {base}/#/models?{UI_MODE}"]


def run_name(stage: str, recipe: str | None = None) -> str:
    """What the runs table shows: the stage, its recipe, and the DVC experiment when there is
    one, e.g. `train · tuned · sulky-seal`."""
    parts = [stage, recipe, os.environ.get("DVC_EXP_NAME")]
    return " · ".join(part for part in parts if part)


# A split's role in a run, as MLflow's dataset inputs name it (the `mlflow.data.context` tag).
CONTEXTS = {"train": "training", "val": "validation", "test": "test"}
SYSTEM_METRICS_INTERVAL_S = 1.0  # a 90-second fit gives a curve of 90 points
# Tag of a train run: what it computes (dlrepro.stages.train.fingerprint), to find an
# interrupted run again and continue it rather than start a second one.
FINGERPRINT_TAG = "dlrepro.fingerprint"


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
    is not its usual one (CONTEXTS), e.g. {"val": "training"} for a fit that learns from val."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    if system_metrics:
        mlflow.set_system_metrics_sampling_interval(SYSTEM_METRICS_INTERVAL_S)
    family_id = experiment_id(family)
    continued = continue_run if continue_run and _run_in(family_id, continue_run) else None
    with mlflow.start_run(
        run_id=continued,
        experiment_id=None if continued else family_id,
        run_name=run_name(stage, recipe),
        tags={**run_tags(stage, inputs), **(tags or {})},
        log_system_metrics=system_metrics,
    ) as run:
        mlflow.log_params({k: _param(v) for k, v in flatten(params).items()})
        log_cache_splits(splits or [], contexts)
        yield run


@cache
def _split_dataset_class() -> type:
    """MLflow's MetaDataset with a profile (defined on first use: mlflow imports slowly)."""
    from mlflow.data.meta_dataset import MetaDataset

    class SplitDataset(MetaDataset):
        def __init__(self, profile: dict[str, Any], **kwargs: Any) -> None:
            self._profile = profile
            super().__init__(**kwargs)

        @property
        def profile(self) -> dict[str, Any]:
            return self._profile

        def to_dict(self) -> dict[str, str]:
            return {**super().to_dict(), "profile": json.dumps(self._profile)}

    return SplitDataset


def cache_split_dataset(folder: Path) -> Any:
    """A split of the prepared cache as an MLflow dataset entity.

    name: `<dataset folder>/<split>` (e.g. `plant_disease_dataset/train`); digest: the md5 that
    dvc.lock records for the split's folder, so runs that read the same version share one
    dataset in MLflow; source: the split's path in the repository (the DVC remote goes in the
    input's tags, see `log_cache_splits`); profile: images, classes, counts per class and the
    image shape.
    """
    import numpy as np
    from mlflow.data.dataset_source_registry import resolve_dataset_source

    root = repo_root()
    with warnings.catch_warnings():  # "can be interpreted in multiple ways": both are local
        warnings.simplefilter("ignore", UserWarning)
        source = resolve_dataset_source(folder.resolve().relative_to(root).as_posix())
    classes = json.loads((folder.parent / "classes.json").read_text())
    labels = np.load(folder / "labels.npy")
    shape = np.load(folder / "images.npy", mmap_mode="r").shape
    profile = {
        "images": len(labels),
        "classes": classes,
        "counts": {name: int((labels == i).sum()) for i, name in enumerate(classes)},
        "image_shape": list(shape[1:]),
    }
    return _split_dataset_class()(
        profile,
        source=source,
        name=f"{Path(dataset_name(root)).name}/{folder.name}",
        digest=dvc_md5(folder),
    )


def dataset_name(root: Path) -> str:
    """The dataset the cache was prepared from, as reports/data.json names it (data.path)."""
    try:
        return json.loads((root / "reports" / "data.json").read_text())["source"]
    except (OSError, ValueError, KeyError):
        return "dataset"


def dvc_remote_url(root: Path) -> str | None:
    """The default DVC remote's URL, when .dvc/config names one."""
    import configparser

    config = configparser.ConfigParser()
    config.read([root / ".dvc" / "config", root / ".dvc" / "config.local"])
    default = config.get("core", "remote", fallback=None)
    url = config.get(f"'remote \"{default}\"'", "url", fallback=None) if default else None
    if url is None or "://" in url or Path(url).is_absolute():
        return url
    return str((root / ".dvc" / url).resolve())  # DVC resolves a relative url against .dvc/


def log_cache_splits(splits: list[Path], contexts: Mapping[str, str] | None = None) -> None:
    """Each cache split as a dataset input of the active run, with its context (training,
    validation, test: CONTEXTS, or `contexts` by split name, e.g. val as training data)."""
    if not splits:
        return
    remote = dvc_remote_url(repo_root())
    tags = {"dvc.remote": remote} if remote else {}
    roles = {**CONTEXTS, **(contexts or {})}
    log_inputs_concurrently(
        [cache_split_dataset(folder) for folder in splits],
        contexts=[roles.get(folder.name, folder.name) for folder in splits],
        tags_list=[tags or None for _ in splits],
    )


def log_inputs_concurrently(datasets: list, contexts: list[str], tags_list: list) -> None:
    """`mlflow.log_inputs`, safe when another run logs the same new datasets at the same moment.

    MLflow's SQL store looks each dataset up and inserts the missing ones in one transaction, so
    two queued experiments starting at once (`dvc queue start -j 2`) both insert it; the loser's
    unique-key violation (`dataset_pk`) comes back as BAD_REQUEST. The winner has committed by
    then, so one more try finds its rows and only links them to this run.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mlflow.log_inputs(datasets, contexts=contexts, tags_list=tags_list)
    except MlflowException as err:
        if err.error_code != "BAD_REQUEST":
            raise
        mlflow.log_inputs(datasets, contexts=contexts, tags_list=tags_list)


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
    except MlflowException:  # not in this store (another server, a deleted run)
        return False


def _param(value: Any) -> str:
    return json.dumps(value) if isinstance(value, list | dict) else str(value)


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """A Ctrl-C during the block takes effect when the block ends.

    Cut inside a SQLite write, MLflow's connection is left mid-transaction: its commit then fails
    with "database is locked" and the interrupt comes out as a tracking error with MLflow's
    logged traceback, not as the stage's one-line "interrupted". The Trainer writes an epoch's
    metrics right after saving its checkpoints, the moment a user (or tests/test_case_study.py)
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
        """Lightning's MLFlowLogger whose writes finish before a Ctrl-C takes effect."""

        def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
            with interrupts_deferred():
                super().log_metrics(metrics, step)

        def log_hyperparams(self, params: Any) -> None:
            with interrupts_deferred():
                super().log_hyperparams(params)

        def finalize(self, status: str = "success") -> None:
            with interrupts_deferred():
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
