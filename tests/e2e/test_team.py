"""A team's set-up end to end: a real MLflow server, DVC remotes, `git clone` + pull elsewhere.

One copy of the repository (small profile) runs the whole pipeline once, tracked on a real
`mlflow server` (SQLite backend, proxied artifact store) at 127.0.0.1, and pushes its cache to
two remotes: the default one from .dvc/config (a folder beside the repository) and an S3 bucket
on a moto server at 127.0.0.1. Then:

- MLflow: every stage's run is on the server (nothing in an embedded store); the train run's
  params, one metric value per epoch, artifacts and tags read back through MlflowClient; the
  export stage registers `plant-cnn`; a server that does not answer stops a stage in one line.
- Remotes: real `git clone`s pull from either remote and are up to date without running a
  stage. Corruption, as DVC 3.67 handles it: a corrupted local cache file is dropped, never
  pushed, and fetched again; a corrupted file on the remote is refused by `dvc pull`, because
  the default remote sets `verify = true`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from helpers.servers import closed_port, mlflow_server
from helpers.workspace import BIN, clone_copy, dvc, ran_stages, run

pytestmark = pytest.mark.slow

EPOCH_METRICS = ("train/loss", "train/acc", "val/loss", "val/acc")
BUCKET = "dlrepro"
STORAGE = "dlrepro-dvc-storage"  # the default remote's folder, beside the repository
# Dummy credentials: moto accepts any. Given through the environment, as a team member's own
# credentials would be (never in .dvc/config, which is committed).
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
OUTPUT_FOLDERS = ("data", "models", "plots", "reports", "metrics")


# -- servers ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    with mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as uri:
        yield uri


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    moto = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=url,
            aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
            region_name=S3_ENV["AWS_DEFAULT_REGION"],
        )
        s3.create_bucket(Bucket=BUCKET)
        yield url
    finally:
        moto.stop()


# -- the one pipeline run -----------------------------------------------------------------------


def git_clone(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "clone", "-q", str(source), str(target)], check=True)
    return target


@pytest.fixture(scope="module")
def pushed(tmp_path_factory, server, s3_endpoint) -> Path:
    """A copy that ran `dvc repro` once into the server, committed and pushed to both remotes."""
    root = tmp_path_factory.mktemp("team") / "repo"
    root.mkdir()
    clone_copy(root)
    # The team's S3 remote is project config and is committed; only credentials stay private.
    dvc(root, "remote", "add", "s3", f"s3://{BUCKET}/dlrepro")
    dvc(root, "remote", "modify", "s3", "endpointurl", s3_endpoint)
    dvc(root, "repro", MLFLOW_TRACKING_URI=server)
    run(root, "git", "add", "-A")
    run(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "results")
    dvc(root, "push")  # the default remote
    dvc(root, "push", "-r", "s3", **S3_ENV)
    return root


@pytest.fixture(scope="module")
def member(pushed, server) -> dict:
    """A team member's clone beside the first, pulled, that runs the export stage (when the
    repository has one but dvc.yaml does not list it yet: the `pushed` copy stays pristine)."""
    root = git_clone(pushed, pushed.parent / "member")
    dvc(root, "pull")
    export = None
    if "export" in yaml.safe_load((root / "dvc.yaml").read_text())["stages"]:
        export = subprocess.CompletedProcess([], 0, "", "")  # ran in the pipeline already
    elif (root / "src" / "dlrepro" / "stages" / "export.py").is_file():
        export = run(
            root, str(BIN / "python"), "-m", "dlrepro.stages.export", check=False,
            MLFLOW_TRACKING_URI=server,
        )  # fmt: skip
    return {"root": root, "export": export}


# -- MLflow -------------------------------------------------------------------------------------


def mlflow_client(uri: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri)


def stage_runs(uri: str, stage: str, tag: str = "dvc.stage") -> list:
    """The stage's own runs (Lightning fits nested under a stage's run carry its tags too)."""
    client = mlflow_client(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, f"tags.`{tag}` = '{stage}'")
    return [r for r in runs if "mlflow.parentRunId" not in r.data.tags]


def test_every_stage_is_tracked_on_the_server_and_nothing_embedded(pushed, server):
    stages = yaml.safe_load((pushed / "dvc.yaml").read_text())["stages"]
    recipes = yaml.safe_load((pushed / "params.yaml").read_text())["recipes"]
    for stage, spec in stages.items():
        if stage == "check-config":  # a check with no result: nothing to track
            assert stage_runs(server, stage) == []
            continue
        for name in [f"{stage}@{key}" for key in recipes] if "foreach" in spec else [stage]:
            assert len(stage_runs(server, name)) == 1, name
    assert not (pushed / "mlflow.db").exists()
    assert not (pushed / "mlruns").exists()


def test_train_run_has_params_per_epoch_metrics_artifacts_and_tags(pushed, server):
    client = mlflow_client(server)
    (train,) = stage_runs(server, "train@text")
    run_id = train.info.run_id
    assert train.info.status == "FINISHED"
    assert train.info.run_name == "train · text"
    params = train.data.params
    # recipes.text.* on the keys every recipe's run shares, so MLflow's compare view pairs them
    assert params["optimizer.lr"] == "0.001"
    assert params["max_epochs"] == params["trainer.max_epochs"] == "2"  # the small profile
    assert params["datamodule.batch_size"] == "32" and params["seed"] == "0"
    assert params["data.seed"] == "0"  # the split's seed: prepare reads it, the run records it
    assert params["recipe"] == "text" and not any(k.startswith("recipes.") for k in params)

    with (pushed / "plots" / "train" / "text" / "history.csv").open() as handle:
        rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]
    assert len(rows) == 2
    for name in EPOCH_METRICS:
        history = sorted(client.get_metric_history(run_id, name), key=lambda m: m.step)
        assert [m.value for m in history] == pytest.approx([row[name] for row in rows]), name
    summary_path = pushed / "metrics" / "train" / "text.json"
    summary = json.loads(summary_path.read_text())
    assert summary["best_val_acc"] == max(row["val/acc"] for row in rows)

    listed = {a.path for a in client.list_artifacts(run_id, "plots/train/text")}
    assert listed == {"plots/train/text/history.csv", "plots/train/text/history.png"}
    downloaded = client.download_artifacts(run_id, "metrics/train/text.json", str(pushed.parent))
    assert Path(downloaded).read_bytes() == summary_path.read_bytes()

    tags = train.data.tags
    assert tags["dlrepro.git_commit"] == run(pushed, "git", "rev-parse", "HEAD~1").stdout.strip()
    assert tags["dvc.stage"] == "train@text" and tags["dlrepro.stage"] == "train"
    lock = yaml.safe_load((pushed / "dvc.lock").read_text())["stages"]["train@text"]
    for split in ("train", "val"):
        cache_md5 = next(d["md5"] for d in lock["deps"] if d["path"] == f"data/cache/{split}")
        assert tags[f"dvc.md5.data/cache/{split}"] == cache_md5


def test_export_registers_a_model_version(member, server):
    export = member["export"]
    assert export is not None and export.returncode == 0, export and export.stderr[-3000:]
    (version,) = mlflow_client(server).search_model_versions("name = 'plant-cnn'")
    (exported,) = stage_runs(server, "export", tag="dlrepro.stage")
    (trained,) = stage_runs(server, "train@tuned")
    assert version.run_id == trained.info.run_id  # the run that made the weights
    assert version.tags["export_run_id"] == exported.info.run_id
    onnx = member["root"] / "models" / "plant_cnn.onnx"
    assert version.tags["onnx_md5"] == hashlib.md5(onnx.read_bytes()).hexdigest()
    assert version.tags["recipe"] == "tuned" and version.tags["selected_on"] == "last_epoch"


def test_stopped_server_stops_the_stage_in_one_line_and_keeps_outputs(member):
    root = member["root"]
    outputs = [
        *(root / "metrics" / "train").rglob("*"),
        *(root / "models" / "plant_cnn").rglob("*"),
    ]
    outputs += (root / "plots" / "train").rglob("*")
    before = {p: p.read_bytes() for p in outputs if p.is_file()}
    with closed_port() as port:  # where no server can be running
        stopped = f"http://127.0.0.1:{port}"
        done = dvc(
            root, "repro", "--force", "--single-item", "train@text", check=False,
            MLFLOW_TRACKING_URI=stopped,
        )  # fmt: skip
    assert done.returncode != 0
    ours = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(ours) == 1 and ours[0].startswith(f"error: MLflow tracking server {stopped} ")
    assert "is not reachable" in ours[0]
    assert "Traceback" not in done.stdout + done.stderr
    assert {p: p.read_bytes() for p in before} == before


# -- DVC remotes --------------------------------------------------------------------------------


def digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.md5(p.read_bytes()).hexdigest()
        for folder in OUTPUT_FOLDERS
        for p in sorted((root / folder).rglob("*"))
        if p.is_file()
    }


def cache_object(root: Path, md5: str) -> Path:
    return root / ".dvc" / "cache" / "files" / "md5" / md5[:2] / md5[2:]


def locked_md5(root: Path, stage: str, out: str) -> str:
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"][stage]
    return next(o["md5"] for o in lock["outs"] if o["path"] == out)


def assert_up_to_date(clone: Path, original: Path, **extra_env: str) -> None:
    assert dvc(clone, "status", "--json", **extra_env).stdout.strip() == "{}"
    again = dvc(clone, "repro", **extra_env)
    assert ran_stages(again.stdout) == [], again.stdout
    assert digest(clone) == digest(original)


def test_default_remote_is_a_folder_beside_the_repository(pushed):
    storage = pushed.parent / STORAGE
    # `dvc remote list` wraps a long path onto the next line: compare words, not lines.
    remotes = " ".join(dvc(pushed, "remote", "list").stdout.split())
    assert f"local {storage} (default)" in remotes
    assert storage.is_dir() and not storage.is_relative_to(pushed)  # outside the repository
    for remote in ("local", "s3"):
        synced = dvc(pushed, "status", "--cloud", "--remote", remote, "--json", **S3_ENV)
        assert synced.stdout.strip() == "{}", remote  # everything in the cache is on the remote


def test_clone_beside_pulls_from_the_default_remote_and_is_up_to_date(pushed):
    clone = git_clone(pushed, pushed.parent / "clone")
    assert not (clone / "models" / "plant_cnn").exists()  # git carries no data
    pulled = dvc(clone, "pull")
    assert "files fetched" in pulled.stdout
    assert_up_to_date(clone, pushed)


def test_clone_elsewhere_reproduces_from_s3_without_running_a_stage(pushed):
    elsewhere = pushed.parent / "elsewhere"
    clone = git_clone(pushed, elsewhere / "clone")
    # This machine's choice of remote goes to .dvc/config.local, which git ignores.
    dvc(clone, "remote", "default", "--local", "s3")
    done = dvc(clone, "repro", "--pull", **S3_ENV)
    assert ran_stages(done.stdout) == [], done.stdout
    assert_up_to_date(clone, pushed, **S3_ENV)
    assert not (elsewhere / STORAGE).exists()  # nothing came from a local folder


def test_corrupted_cache_file_is_dropped_never_pushed_and_fetched_again(pushed, tmp_path):
    clone = git_clone(pushed, pushed.parent / "cache-rot")  # beside: the default remote works
    dvc(clone, "pull")
    md5 = locked_md5(clone, "report", "reports/index.html")
    cached = cache_object(clone, md5)
    cached.chmod(0o644)  # DVC keeps cache files read-only; a disk error does not ask
    cached.write_bytes(b"bit rot")

    # DVC re-hashes a cache file whose size or mtime changed: the bad one is deleted, the push
    # leaves it out (a warning names it) and the remote never receives bad bytes.
    fresh = tmp_path / "fresh"
    dvc(clone, "remote", "add", "--local", "fresh", str(fresh))
    pushed_fresh = dvc(clone, "push", "-r", "fresh")
    assert "Missing cache files" in pushed_fresh.stderr and md5 in pushed_fresh.stderr
    assert not cached.exists()
    assert not (fresh / "files" / "md5" / md5[:2] / md5[2:]).exists()
    assert "not in cache:       reports/index.html" in dvc(clone, "status").stdout

    # The workspace copy was never touched; fetching from the team remote repairs the cache.
    dvc(clone, "fetch")
    assert hashlib.md5(cached.read_bytes()).hexdigest() == md5
    assert dvc(clone, "status", "--json").stdout.strip() == "{}"


def test_corrupted_file_on_the_remote_is_refused_by_pull(pushed):
    rotten = pushed.parent / "rotten"
    # A copy of the team remote (hard links: cheap) in which one file has gone bad.
    shutil.copytree(pushed.parent / STORAGE, rotten / STORAGE, copy_function=os.link)
    md5 = locked_md5(pushed, "report", "reports/index.html")
    bad = rotten / STORAGE / "files" / "md5" / md5[:2] / md5[2:]
    bad.unlink()  # a new file, not the hard-linked original
    bad.write_bytes(b"<html>tampered</html>")

    clone = git_clone(pushed, rotten / "clone")  # its default remote is the rotten copy
    pulled = dvc(clone, "pull", check=False)
    assert pulled.returncode == 1
    assert "Checkout failed for following targets" in pulled.stderr
    assert "reports/index.html" in pulled.stderr
    assert not (clone / "reports" / "index.html").exists()  # refused, not checked out wrong
    assert not cache_object(clone, md5).exists()
    assert (clone / "reports" / "curriculum.md").is_file()  # the good files did arrive
