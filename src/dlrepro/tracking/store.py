"""Where runs go, and a fail-fast check that they can go there.

Embedded default: `sqlite:///<repo>/mlflow.db` with artifacts in `<repo>/mlruns`, both ignored by
git, in the main repository even for a queued experiment (see `store_root`). Set
MLFLOW_TRACKING_URI to use a team server instead. A server that is down, stalls or refuses is
reported in one line before any work (`ensure_reachable`), and so is one that fails a later call
(`refusal`, see `dlrepro.tracking.faults`); every call's wait is bounded (`tracking_uri` sets the
HTTP defaults). `ui_links` opens each experiment in the UI's model-training view.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from dlrepro.errors import TrackingError
from dlrepro.paths import repo_root
from dlrepro.tracking.faults import (
    EMBEDDED,
    apply_http_defaults,
    describe,
    no_answer,
    not_reachable,
)

EXPERIMENT_PREFIX = "dlrepro-"
HEALTH_TIMEOUT_S = 5.0
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
    """MLFLOW_TRACKING_URI when set, else the embedded SQLite store (see `store_root`).

    Every tracking call asks for this first, so it also sets the HTTP defaults that bound a call
    to a server that stops answering (`faults.HTTP_DEFAULTS`, unless the user set them)."""
    apply_http_defaults()
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{store_root() / 'mlflow.db'}"


def ensure_reachable(uri: str | None = None) -> str:
    """Fail in one line, before any work, when a tracking server does not answer, or answers
    but refuses: besides `/health` (which MLflow answers even to a host it then refuses), one
    real API call, made as the stage's own calls will be (credentials from the environment).
    A server that stalls ends it within HEALTH_TIMEOUT_S (`/health`) or one call's bound
    (`faults.call_bound_s`)."""
    uri = uri or tracking_uri()
    apply_http_defaults()
    if uri.startswith(("http://", "https://")):
        health = uri.rstrip("/") + "/health"
        try:
            with urllib.request.urlopen(health, timeout=HEALTH_TIMEOUT_S) as response:
                if response.status != 200:
                    raise TrackingError(f"MLflow server {uri} answered HTTP {response.status}")
        except urllib.error.HTTPError as err:
            raise TrackingError(
                f"MLflow tracking server {uri} answered /health with HTTP {err.code}; see the "
                f"server's log, or {EMBEDDED}"
            ) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            if isinstance(reason, TimeoutError):
                raise TrackingError(no_answer(uri, f"{HEALTH_TIMEOUT_S:g}", " /health")) from None
            raise TrackingError(not_reachable(uri, str(reason))) from None
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
    """One line for a failed tracking call (an MlflowException): the server gone, stalling,
    refusing (HTTP 401/403) or failing otherwise, each with what to do (`faults.describe`)."""
    return describe(uri, err)


def ui_links(base_url: str, uri: str | None = None) -> list[str]:
    """One line per dlrepro experiment (on its runs table), and the registry, each a link that
    opens MLflow's UI in its model-training view. MLflow 3.17 takes the view from the
    `workflowType` query, else from the browser's stored choice (the sidebar's switch), else
    GenAI, whatever the experiment's kind; its root page is always the GenAI-first home."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri or tracking_uri())
    experiments = client.search_experiments(filter_string=f"name LIKE '{EXPERIMENT_PREFIX}%'")
    base = base_url.rstrip("/")
    lines = [
        f"{e.name}: {base}/#/experiments/{e.experiment_id}/runs?{UI_MODE}"
        for e in sorted(experiments, key=lambda e: e.name)
    ]
    return [*lines, f"model registry: {base}/#/models?{UI_MODE}"]
