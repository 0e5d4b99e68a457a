"""The `dlrepro` console script, and the error boundary every stage entry point runs inside."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from dlrepro.errors import DlreproError


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main; a DlreproError becomes one line on stderr and exit status 2."""
    try:
        main()
    except DlreproError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted; outputs were left as they were", file=sys.stderr)
        sys.exit(130)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="dlrepro", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check-config", help="validate params.yaml and print it")
    check.add_argument("params", nargs="?", default="params.yaml")
    args = parser.parse_args(argv)
    if args.command == "check-config":
        run_stage(lambda: _check_config(args.params))


def _check_config(path: str) -> None:
    from omegaconf import OmegaConf

    from dlrepro.config import load_config

    print(OmegaConf.to_yaml(OmegaConf.structured(load_config(path))), end="")
