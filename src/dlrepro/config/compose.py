"""Compose conf/ into params.yaml exactly as `dvc exp run` does (same function, same bytes).

python -m dlrepro.config.compose [override ...]      # make params
"""

from __future__ import annotations

import sys
from pathlib import Path

from dlrepro.errors import ConfigError
from dlrepro.paths import repo_root

CONFIG_NAME = "config"


def compose(output: Path, overrides: list[str] | None = None) -> Path:
    from dvc.utils.hydra import compose_and_dump
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    root = repo_root()
    try:
        compose_and_dump(output, str(root / "conf"), None, CONFIG_NAME, str(root), overrides or [])
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(f"conf/ does not compose: {str(err).splitlines()[0]}") from None
    return output


def main() -> None:
    from dlrepro.cli import run_stage
    from dlrepro.config.load import load_config

    def _compose() -> None:
        target = repo_root() / "params.yaml"
        draft = compose(target.with_suffix(".draft.yaml"), sys.argv[1:])
        try:
            load_config(draft)  # an invalid value never reaches params.yaml
            draft.replace(target)
        finally:
            draft.unlink(missing_ok=True)
        print(f"composed conf/ into {target.name}")

    run_stage(_compose)


if __name__ == "__main__":
    main()
