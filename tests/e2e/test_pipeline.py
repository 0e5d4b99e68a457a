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
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from dlrepro.report.tables import fmt
from dlrepro.tracking.store import ui_links
from helpers.browser import binaries, chromium, shows
from helpers.killing import KILL_POINTS, repro_killed_at, temporaries
from helpers.servers import on_a_free_port, serving
from helpers.workspace import BIN, clone_copy, dvc, ran_stages, run

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
    page = (repo / "reports" / "index.html").read_text()
    chapters = [
        name.removeprefix("curriculum-") for name in stages if name.startswith("curriculum-")
    ]
    for anchor in (
        "errata",
        *chapters,
        "case-study",
        "recipes",
    ):  # each section, linked from the top
        assert f"id='{anchor}'" in page and f"href='#{anchor}'" in page, anchor
    assert page.count("data:image/png;base64,") >= len(chapters)  # figures embedded, no files
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
    # Sampled each second while a fit runs: the small profile's fits last a few seconds each, so
    # one of them may end before its first sample; both together always log some.
    trains = client.search_runs([plant], "tags.`dvc.stage` LIKE 'train@%'")
    assert len(trains) == 2

    def history(key: str) -> list:
        return [m for t in trains for m in client.get_metric_history(t.info.run_id, key)]

    cpu = history("system/cpu_utilization_percentage")
    # psutil's system-wide share: 0-100 whatever the core count (its first reading can be 0.0)
    assert cpu and all(0 <= m.value <= 100 for m in cpu)
    assert history("system/system_memory_usage_megabytes")


def test_every_dvc_plot_has_data_and_its_output_folder_is_ignored(repo):
    """`dvc plots show`: each recipe's curves from the columns its history has (the tuned
    recipe, fitted on train + val, has no val columns), ROC and confusion per recipe."""
    shown = json.loads(dvc(repo, "plots", "show", "--json").stdout)["data"]
    epochs = {
        recipe: len((repo / "plots" / "train" / recipe / "history.csv").read_text().splitlines())
        - 1
        for recipe in ("text", "tuned")
    }
    points = {
        name: len(item["content"]["data"]["values"])
        for name, items in shown.items()
        for item in items
        if item["type"] == "vega"
    }
    assert points["loss"] == points["accuracy"] == 2 * epochs["text"] + epochs["tuned"]
    test_images = (
        len((repo / "plots" / "evaluate" / "text" / "predictions.csv").read_text().splitlines()) - 1
    )
    assert points["confusion-text"] == points["confusion-tuned"] == test_images
    assert points["roc"] > 4
    images = [name for name, items in shown.items() if items[0]["type"] == "image"]
    assert len(images) == 5
    assert (repo / "dvc_plots").is_dir()
    assert run(repo, "git", "status", "--porcelain", "dvc_plots").stdout == ""  # ignored


def test_mlflow_compares_the_recipes_and_the_registry_leads_back_to_training(repo):
    """The compare view of `train · text` and `train · tuned` pairs their settings on shared keys
    and shows each recipe's test figures beside its curves; the registered version points to the
    train run that made its weights, is aliased `champion`, and its card's per-split digests are
    the runs' dataset digests (dvc.lock's md5s)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")
    plant = client.get_experiment_by_name("dlrepro-plant").experiment_id
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    params = yaml.safe_load((repo / "params.yaml").read_text())
    train = {}
    for recipe in ("text", "tuned"):
        (train[recipe],) = client.search_runs([plant], f"tags.`dvc.stage` = 'train@{recipe}'")
        logged = train[recipe].data.params
        assert not [key for key in logged if key.startswith("recipes.")]
        written = json.loads((repo / "metrics" / "evaluate" / f"{recipe}.json").read_text())
        metrics = train[recipe].data.metrics
        assert metrics["test/accuracy"] == written["accuracy"]  # evaluate's figure, exactly
        assert "train/loss" in metrics
    text, tuned = (train[r].data.params for r in ("text", "tuned"))
    assert (text["optimizer._target_"], tuned["optimizer._target_"]) == (
        "torch.optim.Adam",
        "torch.optim.AdamW",
    )
    assert tuned["trainer.precision"] == params["recipes"]["tuned"]["trainer"]["precision"]

    version = client.get_model_version_by_alias("plant-cnn", "champion")
    recipe = version.tags["recipe"]
    assert version.run_id == train[recipe].info.run_id
    export = client.get_run(version.tags["export_run_id"])
    assert export.data.tags["dvc.stage"] == "export"
    assert client.get_registered_model("plant-cnn").description
    md5 = {d["path"]: d["md5"] for stage in lock.values() for d in stage.get("deps", [])}
    for split in ("train", "val", "test"):
        assert version.tags[f"data_md5.{split}"] == md5[f"data/cache/{split}"]
        assert md5[f"data/cache/{split}"] in version.description
    trained_on = {i.dataset.name: i.dataset.digest for i in train[recipe].inputs.dataset_inputs}
    assert trained_on["plant_disease_dataset/train"] == version.tags["data_md5.train"]
    (logged_model,) = client.search_logged_models(
        [plant], filter_string=f"name = 'plant-cnn-{recipe}'"
    )
    assert logged_model.source_run_id == train[recipe].info.run_id


@pytest.mark.skipif(binaries() is None, reason="chromium and chromium-driver not installed")
def test_a_team_member_sees_runs_comparison_model_and_report_in_a_browser(repo):
    """What `make ui` serves, in Debian's headless chromium: the plant experiment's runs, a train
    run's datasets and test figures, the two recipes compared, the registered model with its
    alias; then reports/index.html. Screenshots go to test-artifacts/browser/."""
    import mlflow

    uri = f"sqlite:///{repo / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    plant = client.get_experiment_by_name("dlrepro-plant").experiment_id
    runs = {r.info.run_name: r for r in client.search_runs([plant])}
    train = {recipe: runs[f"train · {recipe}"] for recipe in ("text", "tuned")}
    accuracy = {
        recipe: json.loads((repo / "metrics" / "evaluate" / f"{recipe}.json").read_text())[
            "accuracy"
        ]
        for recipe in train
    }
    digest = next(
        i.dataset.digest
        for i in train["text"].inputs.dataset_inputs
        if i.dataset.name.endswith("/train")
    )
    links = {
        line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in ui_links("http://BASE", uri)
    }
    ui = [str(BIN / "mlflow"), "ui", "--backend-store-uri", uri, "--host", "127.0.0.1"]
    ui += ["--workers", "1"]  # as `make ui` runs it, without the job runner
    lean = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}

    def start(port: int):
        return serving([*ui, "--port", str(port)], port, repo.parent / "ui.log", lean)

    with on_a_free_port(start) as base, chromium() as browser:

        def at(link: str) -> str:
            return link.replace("http://BASE", base)

        shows(
            browser,
            at(links["dlrepro-plant"]),
            "train · text",
            "train · tuned",
            f"plant_disease_dataset/train ({digest})",
            screenshot="runs",
        )
        for recipe, run in train.items():
            shows(
                browser,
                f"{base}/#/experiments/{plant}/runs/{run.info.run_id}?workflowType=machine_learning",
                "test/accuracy",
                "train/loss",
                "plant_disease_dataset/train",
                screenshot=f"train-run-{recipe}",
            )
        ids = quote(json.dumps([train["text"].info.run_id, train["tuned"].info.run_id]))
        # The compare view's metric names are a virtualised list; their values are all shown,
        # to 3 decimals.
        compared = shows(
            browser,
            f"{base}/#/compare-runs?runs={ids}&experiments={quote(json.dumps([plant]))}"
            "&workflowType=machine_learning",
            "optimizer._target_",
            "torch.optim.Adam",
            "torch.optim.AdamW",
            *(f"{round(value, 3):g}" for value in accuracy.values()),
            screenshot="compare",
        )
        assert "recipes.text." not in compared and "recipes.tuned." not in compared
        shows(
            browser,
            at(links["model registry"]).replace("#/models?", "#/models/plant-cnn?"),
            "champion",
            "Tells healthy from diseased",
            screenshot="registered-model",
        )
        report = shows(
            browser,
            (repo / "reports" / "index.html").as_uri(),
            "Contents",
            "Case study",
            screenshot="report",
        )
        recipes = report[report.rindex("Recipes, side by side") :]  # the section, not its link
        for recipe, value in accuracy.items():
            rows = [line.split() for line in recipes.splitlines() if line.startswith(f"{recipe} ")]
            assert any(fmt(value) in row for row in rows), (recipe, value, rows)


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
