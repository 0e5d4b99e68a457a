"""A study in MLflow and on disk: its parent run, each trial's runs nested under it, and the
summary (trials table, optimisation history, parameter importances) in `reports/search/<name>/`
and on the parent run."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from dlrepro.search.space import Search
from dlrepro.search.study import redacted

PARENT_ATTR = "mlflow_parent_run_id"
STUDY_TAG, TRIAL_TAG = "dlrepro.search.study", "dlrepro.search.trial"
KEY_TAG = "dlrepro.search.key"  # the study's name and id in its storage
EXPERIMENT = "plant"  # the trials' train and design runs are there: MLflow nests within one


def parent_run(study: Any, search: Search, storage: str) -> str:
    """The study's MLflow run: the earliest run tagged with the study's key, created when there
    is none. Drivers that start together may each create one; all then pick the earliest, and
    each deletes its own if it lost."""
    import mlflow

    from dlrepro.tracking.runs import experiment_id
    from dlrepro.tracking.store import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    client = mlflow.MlflowClient(tracking_uri())
    experiment = experiment_id(EXPERIMENT)
    key = f"{search.name}#{study._study_id}"  # one study of that name per storage
    query = f"tags.`{KEY_TAG}` = '{key}'"

    def candidates() -> list[Any]:
        found = client.search_runs([experiment], query, max_results=100)
        return sorted(found, key=lambda r: (r.info.start_time, r.info.run_id))

    if not candidates():
        own = client.create_run(
            experiment,
            run_name=f"search {search.name}",
            tags={
                STUDY_TAG: search.name,
                KEY_TAG: key,
                "dlrepro.search.storage": redacted(storage),
            },
        )
        chosen = candidates()[0]
        if chosen.info.run_id != own.info.run_id:
            client.delete_run(own.info.run_id)
    chosen = candidates()[0]
    parent = chosen.info.run_id
    if not chosen.data.params:
        for name, value in _params(search).items():
            client.log_param(parent, name, value)
    study.set_user_attr(PARENT_ATTR, parent)
    return str(parent)


def _params(search: Search) -> dict[str, Any]:
    return {
        "recipe": search.recipe,
        "objective": f"{search.split}/{search.metric} ({search.direction})",
        "trials": search.trials,
        "sampler": f"{search.sampler}(seed={search.seed})",
        "overrides": " ".join(search.overrides) or "none",
        **{f"space.{d.key}": _describe(d) for d in search.space},
    }


def _describe(dim: Any) -> str:
    if dim.type == "categorical":
        return f"categorical{list(dim.choices)}"
    scale = ", log" if dim.log else (f", step {dim.step}" if dim.step else "")
    return f"{dim.type}[{dim.low}, {dim.high}{scale}]"


def nest(parent: str, search: Search, trial: Any, value: float) -> None:
    """Tag the runs of the trial's experiment as children of the study's run."""
    import mlflow

    from dlrepro.tracking.store import tracking_uri

    client = mlflow.MlflowClient(tracking_uri())
    name = trial.user_attrs["exp_name"]
    ids = [e.experiment_id for e in client.search_experiments()]
    for run in client.search_runs(ids, f"tags.`dvc.exp_name` = '{name}'"):
        for key, tag in (("mlflow.parentRunId", parent), (STUDY_TAG, search.name),
                         (TRIAL_TAG, str(trial.number))):  # fmt: skip
            client.set_tag(run.info.run_id, key, tag)
    client.log_metric(parent, f"{search.split}/{search.metric}", value, step=trial.number)


def rows(study: Any, search: Search) -> list[dict[str, Any]]:
    """Every trial, best first (complete ones by value, then the rest by number)."""
    from optuna.trial import TrialState

    keys = [d.key for d in search.space]
    sign = -1 if search.direction == "maximize" else 1
    ordered = sorted(
        study.get_trials(deepcopy=False),
        key=lambda t: (t.state != TrialState.COMPLETE, sign * (t.value or 0.0), t.number),
    )
    return [
        {
            "trial": t.number,
            "state": t.state.name.lower(),
            "value": t.value,
            **{k: t.params.get(k) for k in keys},
            "experiment": t.user_attrs.get("exp_name", ""),
            "note": t.user_attrs.get("failure") or t.user_attrs.get("dropped") or "",
        }
        for t in ordered
    ]


def table(rows_: list[dict[str, Any]], metric: str) -> str:
    """A plain-text table for the terminal."""
    if not rows_:
        return "no trials yet"
    header = [("value" if k == "value" else k) for k in rows_[0]]
    cells = [[_cell(r[k]) for k in rows_[0]] for r in rows_]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)).rstrip() for cell in cells
    ]
    return f"objective: {metric}\n" + "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _tight(axes: Any) -> Any:
    """The axes' figure, laid out so that long key names and the legend fit inside it."""
    figure = axes.get_figure(root=True)
    figure.tight_layout()
    return figure


def write_summary(study: Any, search: Search, folder: Path, parent: str | None) -> list[Path]:
    """trials.csv, history.png and (with two complete trials) importances.png in `folder`,
    logged on the parent run when there is one."""
    from optuna.trial import TrialState

    from dlrepro.outputs import save_figure, write_csv

    folder.mkdir(parents=True, exist_ok=True)
    written = [write_csv(folder / "trials.csv", rows(study, search))]
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
        from optuna.visualization import matplotlib as plots

        if complete:
            target = f"{search.split} {search.metric}"
            axes = plots.plot_optimization_history(study, target_name=target)
            axes.legend(loc="best")  # Optuna puts it outside the figure's edge
            written.append(save_figure(_tight(axes), folder / "history.png"))
        if len(complete) >= 2 and len(search.space) >= 2:
            axes = plots.plot_param_importances(study)
            written.append(save_figure(_tight(axes), folder / "importances.png"))
    if parent:
        import mlflow

        from dlrepro.tracking.store import tracking_uri

        client = mlflow.MlflowClient(tracking_uri())
        for path in written:
            client.log_artifact(parent, str(path), "search")
        if complete:
            best = study.best_trial
            client.log_metric(parent, "best_value", float(best.value))
            client.set_tag(parent, "dlrepro.search.best_trial", str(best.number))
        if len(complete) >= search.trials:
            client.set_terminated(parent, "FINISHED")
    return written
