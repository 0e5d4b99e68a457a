"""DVC stage `check-config`: the whole of params.yaml checked before any other stage runs.

    python -m dlrepro.stages.check_config

It depends on every parameter, so any change reruns it, and the stages that read data depend on
its record, so DVC runs it first: a bad value (a typo'd key, a negative learning rate, an image
too small for a recipe's network, a Trainer option Lightning does not take) stops `dvc repro` and
`dvc exp run` in one line before an output is touched, including when no other stage would
have rerun.
"""

from __future__ import annotations

from dlrepro import paths
from dlrepro.cli import run_stage
from dlrepro.config import load_config
from dlrepro.config.load import read_yaml
from dlrepro.outputs import write_json
from dlrepro.plant.runs import check_recipes

RECORD = paths.REPORTS / "config-check.json"


def main() -> None:
    root = paths.repo_root()
    cfg = load_config(root / "params.yaml")  # every key, type, range and cross-key rule
    check_recipes(cfg, read_yaml(root / "params.yaml"), root)
    # Constant content: the stages after it rerun for their own params, never for this record.
    write_json(root / RECORD, {"params.yaml": "valid for every stage"})
    print("check-config: params.yaml is valid for every stage")


if __name__ == "__main__":
    run_stage(main, sweep=True)
