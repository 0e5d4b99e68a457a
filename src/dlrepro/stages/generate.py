"""DVC stage `generate`: the embedded leaf dataset, in the text's layout (plus `design/`, the
leaves recipes are chosen on), and a contact sheet.

python -m dlrepro.stages.generate
"""

from __future__ import annotations

from dlrepro import paths
from dlrepro.cli import run_stage
from dlrepro.config import load_config
from dlrepro.data.leaves import contact_sheet, generate_dataset
from dlrepro.tracking.runs import log_outcome, stage_run
from dlrepro.tracking.store import ensure_reachable

SHEET_PER_CLASS = 8


def main() -> None:
    root = paths.repo_root()
    data = load_config(root / "params.yaml").data
    ensure_reachable()
    params = {
        "train_size": data.train_size,
        "test_size": data.test_size,
        "raw_size": data.raw_size,
        "seed": data.seed,
        "design_size": data.design_size,
    }
    with stage_run("generate", "data", params, inputs=[]) as run:
        out = root / paths.LEAVES
        counts = generate_dataset(
            out, data.train_size, data.test_size, data.seed, data.raw_size, data.design_size
        )
        sheet = contact_sheet(out, SHEET_PER_CLASS, root / paths.PLOTS / "data" / "leaves.png")
        log_outcome(run.info.run_id, {"images": counts}, {}, [sheet])
    print(
        f"generate: {data.train_size} train + {data.test_size} test + {data.design_size} design "
        f"leaves in {paths.LEAVES}"
    )


if __name__ == "__main__":
    run_stage(main, sweep=True)
