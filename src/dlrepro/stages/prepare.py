"""DVC stage `prepare`: write the datasets every later stage reads.

python -m dlrepro.stages.prepare
"""

from __future__ import annotations

import dataclasses

from dlrepro import paths
from dlrepro.cli import run_stage
from dlrepro.config import load_config
from dlrepro.data.gates import write_gates
from dlrepro.outputs import fresh_dir
from dlrepro.tracking import ensure_reachable, log_outcome, stage_run


def main() -> None:
    root = paths.repo_root()
    cfg = load_config(root / "params.yaml")
    ensure_reachable()
    with stage_run("prepare", "data", dataclasses.asdict(cfg.data), inputs=[]) as run:
        gates_dir = fresh_dir(root / paths.GATES)
        written = write_gates(gates_dir, cfg.data.gates)
        log_outcome(run.info.run_id, {"gates": len(written)}, {}, [gates_dir])
    print(f"prepare: wrote {len(written)} gate tables to {paths.GATES}")


if __name__ == "__main__":
    run_stage(main)
