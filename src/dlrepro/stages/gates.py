"""DVC stage `gates`: the logic-gate truth tables the curriculum trains on (data/gates/<gate>.csv).

python -m dlrepro.stages.gates

Its own stage, apart from the image cache: adding a gate rewrites only data/gates, and only the
chapters that read the changed files rerun (the perceptron reads them all, the others xor.csv).
"""

from __future__ import annotations

from dlrepro import paths
from dlrepro.cli import run_stage
from dlrepro.config import load_config
from dlrepro.data.gates import write_gates
from dlrepro.outputs import new_dir
from dlrepro.tracking.runs import log_outcome, stage_run
from dlrepro.tracking.store import ensure_reachable


def main() -> None:
    root = paths.repo_root()
    data = load_config(root / "params.yaml").data
    ensure_reachable()
    with stage_run("gates", "data", {"gates": data.gates}, inputs=[]) as run:
        with new_dir(root / paths.GATES) as staged:
            written = write_gates(staged, data.gates)
        log_outcome(run.info.run_id, {"gates": len(written)}, {}, [root / paths.GATES])
    print(f"gates: {', '.join(data.gates)} in {paths.GATES}")


if __name__ == "__main__":
    run_stage(main, sweep=True)
