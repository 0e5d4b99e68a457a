"""End to end, as a user runs it: `dvc repro` in a fresh copy of the repository, then again.

One module-scoped copy runs the pipeline once; the tests then read what it left behind
(outputs, dvc.lock, MLflow records), re-run it and try experiments on it. A second fresh copy,
at a longer, different path, has its `dvc repro` SIGKILLed (DVC and the stage's process group
alike) in the middle of each stage in turn (helpers/killing.py), each next `dvc repro` carrying
on from there: it must end byte for byte where the first copy's straight run did.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import yaml

from helpers.killing import KILL_POINTS, repro_killed_at, temporaries
from helpers.workspace import clone_copy, dvc, ran_stages, run

pytestmark = pytest.mark.slow


def digest(root: Path, folders: list[str]) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
        for folder in folders
        for p in sorted((root / folder).rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A fresh clone-like copy on the small profile, with one `dvc repro` done; what that first
    run printed, locked and left for git lies beside the copy (`first_run(repo, ...)`)."""
    root = tmp_path_factory.mktemp("repo") / "clone"
    root.mkdir()
    clone_copy(root)
    first = dvc(root, "repro")
    first_run(root, "log").write_text(first.stdout)
    first_run(root, "lock").write_bytes((root / "dvc.lock").read_bytes())
    first_run(root, "git").write_text(run(root, "git", "status", "--porcelain").stdout)
    return root


def first_run(root: Path, what: str) -> Path:
    return root.parent / f"first_run.{what}"


def test_every_stage_ran_and_wrote_its_outputs(repo):
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    recipes = yaml.safe_load((repo / "params.yaml").read_text())["recipes"]
    expanded = [  # a foreach stage runs once per recipe: train@text, train@tuned, ...
        f"{name}@{key}" if "foreach" in stage else name
        for name, stage in stages.items()
        for key in (recipes if "foreach" in stage else [None])
    ]
    ran = ran_stages(first_run(repo, "log").read_text())
    assert sorted(ran) == sorted(expanded)
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert sorted(lock) == sorted(expanded)
    assert (repo / "reports" / "index.html").stat().st_size > 10_000
    assert "## Errata" in (repo / "reports" / "curriculum.md").read_text()


def test_second_repro_is_a_no_op(repo):
    again = dvc(repo, "repro")
    assert ran_stages(again.stdout) == []
    assert "up to date" in again.stdout
    assert dvc(repo, "status", "--json").stdout.strip() == "{}"


def test_mlflow_has_a_run_per_stage_with_params_metrics_artifacts_and_tags(repo):
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    experiments = {e.name: e.experiment_id for e in client.search_experiments()}
    runs = client.search_runs(list(experiments.values()), "tags.`dvc.stage` != ''")
    by_stage = {
        r.data.tags["dvc.stage"]: r for r in runs if "mlflow.parentRunId" not in r.data.tags
    }
    assert sorted(by_stage) == sorted(set(lock) - {"check-config"})  # a check, no run to track
    perceptron = by_stage["curriculum-perceptron"]
    assert perceptron.data.params["lr"] == "0.1"
    assert perceptron.data.metrics["AND.accuracy"] == 1.0
    assert len(perceptron.data.tags["dlrepro.git_commit"]) == 40
    gates_md5 = next(
        d["md5"] for d in lock["curriculum-perceptron"]["deps"] if d["path"] == "data/gates"
    )
    assert perceptron.data.tags["dvc.md5.data/gates"] == gates_md5
    artifacts = {a.path for a in client.list_artifacts(perceptron.info.run_id, "plots/curriculum")}
    assert artifacts == {"plots/curriculum/perceptron"}
    children = client.search_runs(
        [experiments["dlrepro-curriculum"]],
        f"tags.mlflow.parentRunId = '{perceptron.info.run_id}'",
    )
    assert len(children) == 4  # one Lightning fit per gate, nested under the stage's run
    pipeline_ids = {r.data.tags["dlrepro.pipeline_id"] for r in by_stage.values()}
    assert len(pipeline_ids) == 1  # one code version + params: one group


def test_case_study_runs_carry_dvc_datasets_system_metrics_and_telling_names(repo):
    """The MLflow UI's Dataset column and System metrics tab, read back through the REST-level
    client: each split a run read is a dataset input whose digest is dvc.lock's md5 of it."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    plant = client.get_experiment_by_name("dlrepro-plant").experiment_id
    for stage, contexts in (
        ("train@text", {"train": "training", "val": "validation"}),
        ("train@tuned", {"train": "training", "val": "training"}),  # fit_on: train+val
        ("evaluate@tuned", {"test": "test"}),
    ):
        (found,) = client.search_runs([plant], f"tags.`dvc.stage` = '{stage}'")
        assert found.info.run_name == stage.replace("@", " · ")
        md5 = {d["path"]: d["md5"] for d in lock[stage]["deps"]}
        inputs = {
            i.dataset.name: (i.dataset.digest, {t.key: t.value for t in i.tags})
            for i in found.inputs.dataset_inputs
        }
        assert sorted(inputs) == sorted(f"plant_disease_dataset/{split}" for split in contexts)
        for split, context in contexts.items():
            digest, tags = inputs[f"plant_disease_dataset/{split}"]
            assert digest == md5[f"data/cache/{split}"]
            assert tags["mlflow.data.context"] == context
        profile = json.loads(found.inputs.dataset_inputs[0].dataset.profile)
        assert profile["classes"] == ["Diseased", "Healthy"] and profile["images"] > 0
    (train,) = client.search_runs([plant], "tags.`dvc.stage` = 'train@tuned'")
    cpu = client.get_metric_history(train.info.run_id, "system/cpu_utilization_percentage")
    assert cpu and all(0 <= m.value <= 100 * os.cpu_count() for m in cpu)
    assert client.get_metric_history(train.info.run_id, "system/system_memory_usage_megabytes")


def test_kill_9_in_the_middle_of_every_stage_loses_nothing(repo, tmp_path_factory):
    """Each kill point in turn: `dvc repro` is SIGKILLed mid-stage, and the next `dvc repro`
    carries on from there. The last one completes, and the copy is then exactly what the
    uninterrupted first run made elsewhere: dvc.lock (the md5 of every output, checkpoints and
    exports included) byte-identical to the first run's, `dvc status` clean, no temporary
    anywhere, and git seeing what it saw after the first run. Everything a stage writes is a
    function of code, params and data, so neither the other path nor each stage rerun over a
    store that already holds the killed runs changes a byte (this stands for a forced rerun)."""
    root = tmp_path_factory.mktemp("another-place-for-the-same-repository") / "clone"
    root.mkdir()
    clone_copy(root)
    expected = first_run(repo, "lock").read_text()
    stages = yaml.safe_load(expected)["stages"]
    order = ran_stages(first_run(repo, "log").read_text())
    tried = []
    for stage, moment, what in sorted(KILL_POINTS, key=lambda point: order.index(point[0])):
        command = tuple(stages[stage]["cmd"].split(" -m ", 1)[1].split())  # after `python -m`
        repro_killed_at(root, command, moment)
        tried.append(f"{stage}: {what}")
    done = dvc(root, "repro")
    assert "Traceback" not in done.stdout + done.stderr

    assert dvc(root, "status", "--json").stdout.strip() == "{}"
    assert temporaries(root) == []
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    running = client.search_runs(experiments, "attributes.status = 'RUNNING'")
    assert [r.data.tags.get("dvc.stage") for r in running] == []  # killed runs were ended
    lock = (root / "dvc.lock").read_text()
    assert str(root) not in lock and str(repo) not in expected
    assert lock == expected, tried
    # Git sees what it saw after the first run (dvc.lock, metrics/): no temporary, no junk.
    assert run(root, "git", "status", "--porcelain").stdout == first_run(repo, "git").read_text()
    print(f"{len(tried)} kill points tried, all recovered:", *tried, sep="\n  ")


def test_experiment_reruns_only_the_chapter_and_the_report(repo):
    done = dvc(repo, "exp", "run", "-S", "curriculum.perceptron.lr=0.25")
    ran = sorted(ran_stages(done.stdout))
    assert ran == ["check-config", "curriculum-perceptron", "report"]  # the check reruns first
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["curriculum"]["perceptron"]["lr"] == 0.25


# Each a setting that was once accepted, or refused only after other stages had rewritten
# their outputs; now check-config refuses it before any other stage runs.
BAD_OVERRIDES = {
    "curriculum.perceptron.lr=-1": "error: curriculum.perceptron.lr=-1.0: must be > 0",
    "recipes.tuned.scheduler.max_lr=-1": "error: recipes.tuned.scheduler.max_lr=-1: must be > 0",
    "data.image_size=20": "error: data.image_size=20: too small for recipes.",
    "+data.foo=1": "error: data.foo: unknown key",
    "+trainer.foo=1": "error: trainer.foo: not an argument of pytorch_lightning.Trainer",
    "export.recipe=nope": "error: export.recipe='nope': unknown; allowed: text, tuned",
}


@pytest.mark.parametrize("override", sorted(BAD_OVERRIDES))
def test_invalid_override_fails_in_one_line_and_keeps_outputs(repo, override):
    folders = ["data", "models", "metrics", "plots", "reports"]
    before, params = digest(repo, folders), (repo / "params.yaml").read_bytes()
    try:
        done = dvc(repo, "exp", "run", "-S", override, check=False)
    finally:
        (repo / "params.yaml").write_bytes(params)  # `dvc exp run` left its composition
    assert done.returncode != 0
    ours = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(ours) == 1 and ours[0].startswith(BAD_OVERRIDES[override]), done.stderr[-2000:]
    assert ran_stages(done.stdout) == ["check-config"]
    assert "Traceback" not in done.stdout + done.stderr
    assert digest(repo, folders) == before
