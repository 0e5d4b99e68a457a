"""The search's pure parts: the search file's checks (the test split is never an objective), the
trial's overrides, proposals that depend only on the history told, and promotion's texts."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import yaml

from dlrepro.cli import main
from dlrepro.errors import ConfigError
from dlrepro.search.promote import listed, recipe_text
from dlrepro.search.space import load_search
from dlrepro.search.study import load_study, propose

REPO = Path(__file__).resolve().parents[2]
SPACE = {
    "recipe": "tuned",
    "objective": {"split": "design", "metric": "accuracy", "direction": "maximize"},
    "trials": 4,
    "sampler": {"name": "TPESampler", "seed": 3},
    "space": {
        "scheduler.max_lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
        "max_epochs": {"type": "int", "low": 8, "high": 32, "step": 8},
        "augment.rot90": {"type": "categorical", "choices": [True, False]},
        "model.convs_per_block": {"type": "categorical", "choices": [[1, 1, 2], [1, 2, 2]]},
    },
}


def search_file(tmp_path: Path, **changes) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({**SPACE, **changes}))
    return path


def test_a_search_file_reads_into_distributions_and_overrides(tmp_path):
    search = load_search(search_file(tmp_path, overrides=["profile=small"]), ["text", "tuned"])
    assert (search.name, search.target, search.metrics_file) == (
        "space",
        "design@tuned",
        "metrics/design/tuned.json",
    )
    dists = search.distributions()
    assert dists["scheduler.max_lr"] == optuna.distributions.FloatDistribution(1e-3, 1e-2, log=True)
    assert dists["max_epochs"] == optuna.distributions.IntDistribution(8, 32, step=8)
    overrides = search.trial_overrides(
        {"max_epochs": 16, "augment.rot90": False, "scheduler.max_lr": 0.004}
    )
    assert overrides == [
        "profile=small",
        "recipes.tuned.augment.rot90=false",
        "recipes.tuned.max_epochs=16",
        "recipes.tuned.scheduler.max_lr=0.004",
    ]
    # A list choice travels through Optuna as its JSON text, and back as the list.
    assert dists["model.convs_per_block"].choices == ("[1, 1, 2]", "[1, 2, 2]")
    assert search.values({"model.convs_per_block": "[1, 2, 2]"}) == {
        "model.convs_per_block": [1, 2, 2]
    }
    assert search.trial_overrides({"model.convs_per_block": "[1, 2, 2]"})[-1] == (
        "recipes.tuned.model.convs_per_block=[1,2,2]"
    )


def test_the_test_split_is_never_an_objective(tmp_path, capsys):
    path = search_file(tmp_path, objective={"split": "test", "metric": "accuracy"})
    with pytest.raises(ConfigError, match="the test split is never an objective"):
        load_search(path, ["tuned"])
    with pytest.raises(SystemExit) as done:  # the command says it in one line
        main(["search", "run", str(path)])
    assert done.value.code == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: ") and "objective.split=test" in line


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"recipe": "nope"}, "not a recipe of params.yaml"),
        ({"trials": 0}, "trials=0: a whole number of at least 1"),
        ({"space": {}}, "give at least one key"),
        (
            {"space": {"lr": {"type": "float", "low": 0.0, "high": 1.0, "log": True}}},
            "log: true needs low > 0",
        ),
        ({"space": {"lr": {"type": "float", "low": 2.0, "high": 1.0}}}, "must be below high"),
        ({"space": {"x": {"type": "categorical", "choices": [1]}}}, "at least 2 values"),
        ({"space": {"recipes.tuned.lr": {"type": "int", "low": 1, "high": 2}}}, "under the recipe"),
        ({"sampler": {"name": "Grid"}}, "sampler.name='Grid'"),
        ({"study": "Bad Name"}, "use a-z, 0-9"),
        ({"objectiv": {}}, "unknown key 'objectiv'"),
    ],
)
def test_a_bad_search_file_is_one_line(tmp_path, changes, words):
    with pytest.raises(ConfigError, match=words.replace("(", r"\(").replace(".", r"\.")):
        load_search(search_file(tmp_path, **changes), ["text", "tuned"])


def told(value_of, search, storage: str, count: int, restart_at: int | None = None) -> list[dict]:
    """`count` trials asked and told `value_of(params)`; the study reloaded at `restart_at`."""
    study = load_study(search, storage)
    for number in range(count):
        if number == restart_at:
            study = load_study(search, storage)  # a new driver process: a fresh sampler
        trial = propose(study, search)
        study.tell(trial, value_of(trial.params))
    return [t.params for t in study.trials]


def test_same_file_seed_and_results_give_the_same_proposals_resumed_or_not(tmp_path):
    search = load_search(search_file(tmp_path), ["tuned"])

    def value_of(params):  # a deterministic objective standing in for the experiments
        return -abs(params["scheduler.max_lr"] - 0.004) - params["max_epochs"] / 1000

    count = 14  # past TPE's 10 random start-up trials
    first = told(value_of, search, f"sqlite:///{tmp_path / 'a.db'}", count)
    again = told(value_of, search, f"sqlite:///{tmp_path / 'b.db'}", count)
    resumed = told(value_of, search, f"sqlite:///{tmp_path / 'c.db'}", count, restart_at=7)
    assert first == again == resumed
    other_seed = load_search(
        search_file(tmp_path, sampler={"name": "TPESampler", "seed": 4}), ["tuned"]
    )
    assert told(value_of, other_seed, f"sqlite:///{tmp_path / 'd.db'}", 3) != first[:3]
    other_results = told(lambda p: -value_of(p), search, f"sqlite:///{tmp_path / 'e.db'}", count)
    assert other_results[:10] == first[:10] and other_results[10:] != first[10:]


def Trial() -> SimpleNamespace:  # stands in for optuna's FrozenTrial
    return SimpleNamespace(
        number=5,
        value=0.9617,
        params={"scheduler.max_lr": 0.0042, "augment.rot90": False},
        user_attrs={"exp_name": "space-5"},
    )


def test_a_promoted_recipe_extends_the_studys_recipe_or_rewrites_it(tmp_path):
    search = load_search(search_file(tmp_path), ["tuned"])
    base = (REPO / "conf/recipe/tuned.yaml").read_text()
    new = recipe_text(search, Trial(), "tuned_s5", base)
    assert new.startswith("# Promoted by `dlrepro search promote space --trial 5 --as tuned_s5`")
    assert "design accuracy 0.9617" in new and "dvc exp apply space-5" in new
    assert yaml.safe_load(new) == {
        "defaults": ["tuned", "_self_"],
        "scheduler": {"max_lr": 0.0042},
        "augment": {"rot90": False},
    }
    replaced = yaml.safe_load(recipe_text(search, Trial(), "tuned", base))
    expected = yaml.safe_load(base)
    expected["scheduler"]["max_lr"] = 0.0042
    expected["augment"]["rot90"] = False
    assert replaced == expected


def test_the_promoted_recipe_is_listed_once_after_the_others():
    config = (REPO / "conf/config.yaml").read_text()
    added = listed(config, "tuned_s5")
    assert added.count("recipe@recipes.tuned_s5: tuned_s5") == 1
    assert added.index("recipe@recipes.tuned: tuned") < added.index("recipe@recipes.tuned_s5")
    assert listed(added, "tuned_s5") == added
    assert listed(config, "tuned") == config


def test_a_trial_is_nested_before_it_is_told_so_a_kill_between_leaves_it_to_the_next_pass(
    tmp_path, monkeypatch
):
    """The driver killed after `tell` but before the runs were nested would leave a complete
    trial whose runs hang outside the study's run forever (no later pass looks at complete
    trials). Nesting first means a kill leaves it running, and the next pass does both."""
    from optuna.trial import TrialState

    from dlrepro.search import experiments as exps
    from dlrepro.search.study import Driver, driver_id

    search = load_search(search_file(tmp_path), ["tuned"])
    study = optuna.create_study(direction="maximize")
    trial = study.ask(search.distributions())
    for key, value in {"driver": driver_id(tmp_path), "exp_name": "space-0"}.items():
        trial.set_user_attr(key, value)
    monkeypatch.setattr(exps, "experiments", lambda root, baselines: {})
    monkeypatch.setattr(exps, "outcome", lambda root, found: exps.DONE)
    monkeypatch.setattr(exps, "metric", lambda root, name, path, key: 0.75)
    driver = Driver(tmp_path, search, study, log=lambda line: None)
    seen: list[TrialState] = []

    def killed(told, value):
        seen.append(study.get_trials(deepcopy=False)[told.number].state)
        raise KeyboardInterrupt  # the kill, in the middle of nesting

    with pytest.raises(KeyboardInterrupt):
        driver.reconcile(killed)
    assert seen == [TrialState.RUNNING]
    assert study.get_trials(deepcopy=False)[0].state == TrialState.RUNNING

    def nest(told, value):
        seen.append(study.get_trials(deepcopy=False)[told.number].state)

    assert driver.reconcile(nest) == 0
    assert seen == [TrialState.RUNNING, TrialState.RUNNING]
    assert study.get_trials(deepcopy=False)[0].state == TrialState.COMPLETE
    assert study.get_trials(deepcopy=False)[0].value == 0.75


def test_a_point_another_driver_asked_at_the_same_moment_is_dropped_not_run_twice(
    tmp_path, monkeypatch
):
    """Two drivers that read the study at once seed their samplers alike and propose the same
    point. The driver that sees the other's trial after its own ask drops its own."""
    from optuna.trial import TrialState

    from dlrepro.search import experiments as exps
    from dlrepro.search import study as study_module
    from dlrepro.search.study import Driver

    search = load_search(search_file(tmp_path), ["tuned"])
    study = optuna.create_study(direction="maximize")
    queued: list[str] = []
    monkeypatch.setattr(exps, "head", lambda root: "abc123")
    monkeypatch.setattr(exps, "queue", lambda root, name, overrides, target: queued.append(name))
    proposals = []

    def racing(study_, search_):
        mine = propose(study_, search_)
        if not proposals:  # the other driver asks the same point before this one looks again
            study_.enqueue_trial(mine.params)
            other = study_.ask(search_.distributions())
            other.set_user_attr("driver", "elsewhere")
        proposals.append(mine)
        return mine

    monkeypatch.setattr(study_module, "propose", racing)
    driver = Driver(tmp_path, search, study, log=lambda line: None)
    assert driver.ask_more(pending=search.jobs - 1) == 1
    first, other, second = study.get_trials(deepcopy=False)
    assert first.state == TrialState.FAIL and first.user_attrs["dropped"] == "duplicate"
    assert other.state == TrialState.RUNNING and other.params == first.params
    assert second.state == TrialState.RUNNING and second.params != first.params
    assert queued == [f"{search.name}-{second.number}"]
