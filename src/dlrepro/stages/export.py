"""DVC stage `export`: the selected checkpoint of recipe `export.recipe` (tuned by default) →
ONNX + torch.export program, proven on the test split, and registered in MLflow as a new version
of `plant-cnn` tagged with its recipe, pointing to the train run that made the weights, aliased
`champion`.

python -m dlrepro.stages.export

Parity failure (a probability off by more than 1e-5, or any label different) stops the stage in
one line (exit 2) and leaves earlier exports in place. DVC reruns this stage only when the
checkpoint, the test data or the export code changes; a rerun that produces the same ONNX bytes
does not add a registry version (see `dlrepro.serving.registry`).
"""

from __future__ import annotations

import json

from dlrepro import paths
from dlrepro.cli import run_stage
from dlrepro.config import load_config
from dlrepro.errors import DataError
from dlrepro.serving.contract import ONNX_MODEL, PROGRAM, served_checkpoint, to_model_input
from dlrepro.tracking.runs import log_outcome, stage_run
from dlrepro.tracking.store import ensure_reachable


def main() -> None:
    root = paths.repo_root()
    cfg = load_config(root / "params.yaml")
    ensure_reachable()

    from dlrepro.data.cache import load_split
    from dlrepro.hashing import dvc_md5
    from dlrepro.outputs import write_json
    from dlrepro.serving.export import PARITY_TOLERANCE, export_checkpoint
    from dlrepro.serving.registry import model_card, register_onnx
    from dlrepro.serving.runtime import OnnxModel
    from dlrepro.tracking.lineage import train_run_of
    from dlrepro.tracking.runs import git_commit

    recipe = cfg.export.recipe
    checkpoint = root / served_checkpoint(cfg)
    if not checkpoint.is_file():
        raise DataError(
            f"{checkpoint.relative_to(root)}: not found: run `dvc repro train@{recipe}` first"
        )
    evaluation = root / paths.METRICS / "evaluate" / f"{recipe}.json"
    if not evaluation.is_file():
        raise DataError(
            f"{evaluation.relative_to(root)}: not found: run `dvc repro evaluate@{recipe}` first"
        )
    cache = root / paths.CACHE
    images, _, _ = load_split(cache, "test")
    params = {
        "recipe": recipe,
        "checkpoint": checkpoint.relative_to(root).as_posix(),
        "parity_tolerance": PARITY_TOLERANCE,
        "min_side": cfg.data.min_side,
    }
    inputs = [checkpoint.parent, cache / "classes.json", cache / "test"]  # its deps in dvc.yaml
    with stage_run("export", "plant", params, inputs, recipe=recipe) as run:
        figures = export_checkpoint(
            checkpoint,
            root / ONNX_MODEL,
            root / PROGRAM,
            images,
            min_side=cfg.data.min_side,
            batch_size=cfg.data.batch_size,
            tolerance=PARITY_TOLERANCE,
        )
        metrics = write_json(root / paths.METRICS / "export.json", figures)
        spec, commit = cfg.recipes[recipe], git_commit()
        # per split, as the runs' dataset inputs show them (their digests are the same md5s)
        data_md5 = {split: dvc_md5(cache / split) for split in ("train", "val", "test")}
        meta = OnnxModel(root / ONNX_MODEL).session.get_modelmeta().custom_metadata_map
        card = model_card(
            recipe,
            spec.fit_on,
            spec.selected_on,
            json.loads(evaluation.read_text()),
            meta,
            data_md5,
            commit,
        )
        registered = register_onnx(
            root / ONNX_MODEL,
            to_model_input(images[:2]),
            tags={
                "git_commit": commit,
                **{f"data_md5.{split}": md5 for split, md5 in data_md5.items()},
                "recipe": recipe,
                "fit_on": spec.fit_on,
                "selected_on": spec.selected_on,
            },
            description=card,
            trained_by=train_run_of(checkpoint.parent, recipe),
        )
        log_outcome(run.info.run_id, figures, {}, [metrics])
    onnx = figures["onnx"]
    state = "registered as" if registered.created else "unchanged, still"
    print(
        f"export: {ONNX_MODEL} and {PROGRAM}: max |Δ probability| {onnx['max_abs_diff']:.2g} "
        f"on {onnx['images']} test images; {state} {registered.uri}"
    )


if __name__ == "__main__":
    run_stage(main, sweep=True)
