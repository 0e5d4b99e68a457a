"""`dlrepro search run | show | promote`: the commands over a study (see dlrepro.search)."""

from __future__ import annotations

import argparse
from pathlib import Path

from dlrepro.errors import ConfigError

SEARCH_DIR = Path("conf/search")


def add_parser(sub: argparse._SubParsersAction) -> None:
    search = sub.add_parser(
        "search",
        help="a hyperparameter search: an Optuna study whose trials are DVC experiments",
        description="Run, show or promote a study declared in conf/search/<name>.yaml.",
    )
    verbs = search.add_subparsers(dest="verb", required=True)
    storage = argparse.ArgumentParser(add_help=False)
    storage.add_argument(
        "--storage",
        help="Optuna storage URL (default: OPTUNA_STORAGE, else sqlite:///<repo>/optuna.db)",
    )
    run = verbs.add_parser(
        "run",
        parents=[storage],
        help="run (or resume) the study until it holds its trials",
        description="Run the study until it holds N complete trials; the same command resumes "
        "it after any interruption.",
    )
    run.add_argument("file", help="conf/search/<name>.yaml (or the name)")
    run.add_argument("--trials", type=int, metavar="N", help="complete trials wanted")
    run.add_argument("--jobs", type=int, metavar="J", help="experiments at once")
    show = verbs.add_parser("show", parents=[storage], help="the trials, best first")
    show.add_argument("file", help="conf/search/<name>.yaml (or the name)")
    promote = verbs.add_parser(
        "promote", parents=[storage], help="write a trial's parameters as a recipe"
    )
    promote.add_argument("file", help="conf/search/<name>.yaml (or the name)")
    promote.add_argument("--trial", type=int, metavar="K", help="default: the best trial")
    promote.add_argument("--as", dest="as_recipe", required=True, metavar="RECIPE")


def _search(root: Path, given: str, trials: int | None = None, jobs: int | None = None):
    import dataclasses

    from dlrepro.config import load_config
    from dlrepro.search.space import load_search

    path = Path(given)
    if not path.suffix:
        path = root / SEARCH_DIR / f"{given}.yaml"
    cfg = load_config(root / "params.yaml")
    search = load_search(path, list(cfg.recipes))
    for key, value in (("trials", trials), ("jobs", jobs)):
        if value is not None and value < 1:
            raise ConfigError(f"--{key} {value}: at least 1")
    return dataclasses.replace(search, trials=trials or search.trials, jobs=jobs or search.jobs)


def main(args: argparse.Namespace) -> None:
    from dlrepro.paths import repo_root
    from dlrepro.search import study as studies

    root = repo_root()
    search = _search(root, args.file, getattr(args, "trials", None), getattr(args, "jobs", None))
    storage = studies.storage_url(root, args.storage)
    if args.verb == "run":
        _run(root, search, storage)
    elif args.verb == "show":
        from dlrepro.search.summary import rows, table, write_summary

        study = studies.load_study(search, storage, create=False)
        print(table(rows(study, search), f"{search.split} {search.metric} ({search.direction})"))
        folder = root / "reports" / "search" / search.name
        write_summary(study, search, folder, None)
        print(f"summary (trials.csv, plots) in {folder.relative_to(root)}")
    else:
        _promote(root, search, storage, args.trial, args.as_recipe)


def _run(root: Path, search, storage: str) -> None:
    from dlrepro.search import summary
    from dlrepro.search.study import Driver, load_study
    from dlrepro.tracking.store import ensure_reachable

    ensure_reachable()
    _check_design_split(root, search)
    study = load_study(search, storage)
    parent = summary.parent_run(study, search, storage)
    driver = Driver(root, search, study)
    print(f"study {search.name}: {search.trials} trials, {search.jobs} at a time, in {storage}")
    driver.run(lambda trial, value: summary.nest(parent, search, trial, value))
    folder = root / "reports" / "search" / search.name
    summary.write_summary(study, search, folder, parent)
    best = study.best_trial
    print(
        f"study {search.name}: best trial {best.number} ({best.user_attrs.get('exp_name')}), "
        f"{search.split} {search.metric} {best.value:.4f}; summary in {folder.relative_to(root)}"
    )


def _check_design_split(root: Path, search) -> None:
    """A design objective needs design images (reports/data.json, once prepare has run)."""
    import json

    report = root / "reports" / "data.json"
    if search.split != "design" or not report.exists():
        return
    counts = json.loads(report.read_text()).get("counts", {}).get("design", {})
    if not sum(counts.values()):
        raise ConfigError(
            f"study {search.name}: objective.split=design, but the design split is empty; set "
            "data.design_size (generated data), data.design_fraction or add a design/ folder"
        )


def _promote(root: Path, search, storage: str, number: int | None, as_recipe: str) -> None:
    from optuna.trial import TrialState

    from dlrepro.search.promote import promote
    from dlrepro.search.study import load_study

    study = load_study(search, storage, create=False)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        raise ConfigError(f"study {search.name}: no complete trial to promote")
    if number is None:
        trial = study.best_trial
    else:
        chosen = [t for t in complete if t.number == number]
        if not chosen:
            raise ConfigError(f"study {search.name}: trial {number} is not a complete trial")
        trial = chosen[0]
    path = promote(root, search, trial, as_recipe)
    print(
        f"wrote {path.relative_to(root)} from trial {trial.number}; "
        f"`dvc repro train@{as_recipe} evaluate@{as_recipe}` trains and evaluates it"
    )
