"""DVC stage `prepare`: the validated uint8 cache of the image dataset (train, val, design, test).

python -m dlrepro.stages.prepare
"""

from __future__ import annotations

from dlrepro import paths
from dlrepro.cli import run_stage
from dlrepro.config import load_config
from dlrepro.data.ingest import ingest
from dlrepro.errors import ConfigError
from dlrepro.outputs import write_json
from dlrepro.tracking.runs import log_outcome, stage_run
from dlrepro.tracking.store import ensure_reachable


def main() -> None:
    root = paths.repo_root()
    data = load_config(root / "params.yaml").data
    if data.source == "generated" and data.path != paths.LEAVES.as_posix():
        raise ConfigError(
            f"data.path={data.path!r}: source=generated reads {paths.LEAVES.as_posix()}; "
            "set data.source=folder to ingest your own dataset"
        )
    source = root / data.path
    ensure_reachable()
    params = {
        "source": data.source,
        "path": data.path,
        "image_size": data.image_size,
        "test_fraction": data.test_fraction,
        "val_fraction": data.val_fraction,
        "design_fraction": data.design_fraction,
        "min_side": data.min_side,
        "seed": data.seed,
    }
    inputs = [source] if source.is_dir() else []
    with stage_run("prepare", "data", params, inputs) as run:
        report = ingest(
            source,
            root / paths.CACHE,
            data.image_size,
            data.test_fraction,
            data.seed,
            data.min_side,
            data.val_fraction,
            data.design_fraction,
        )
        report.source = data.path  # as configured, not this machine's absolute path
        report_path = write_json(root / paths.REPORTS / "data.json", report.to_dict())
        summary = {
            "images": report.counts,
            "skipped": len(report.skipped),
            "leaks": len(report.leaks),
        }
        log_outcome(run.info.run_id, summary, {}, [report_path])
    print(f"prepare: cache in {paths.CACHE}, data report in {report_path.relative_to(root)}")


if __name__ == "__main__":
    run_stage(main, sweep=True)
