"""The `dlrepro` console script, and the error boundary every stage entry point runs inside."""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import sys
from collections.abc import Callable

from dlrepro.errors import DlreproError


def run_stage(main: Callable[[], None], sweep: bool = False) -> None:
    """Run a stage's main; a DlreproError becomes one line on stderr and exit status 2.
    `sweep`: first remove what killed runs left in the workspace (a DVC stage's start)."""
    try:
        if sweep:
            _sweep_leftovers()
        main()
    except DlreproError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:
        if err.errno is None or err.errno not in DISK_ERRORS:
            raise
        print(f"error: {disk_error(err)}", file=sys.stderr)
        sys.exit(2)
    except Exception as err:
        if not type(err).__module__.startswith("mlflow."):  # not imported here: it is slow
            raise
        # A tracking call that failed after the start-up check (the server gone or stalling, a
        # lost login, a locked store): one line, as for every other error a user can act on.
        from dlrepro.tracking.store import refusal, tracking_uri

        print(f"error: {refusal(tracking_uri(), err)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted; outputs were left as they were", file=sys.stderr)
        sys.exit(130)


def _sweep_leftovers() -> None:
    from dlrepro.outputs import sweep_workspace
    from dlrepro.paths import repo_root

    with contextlib.suppress(OSError):  # a folder that cannot be listed: the stage's own
        sweep_workspace(repo_root())  # writes will say so


# Faults of the disk or the folders, not of dlrepro: each is one line naming the path.
DISK_ERRORS = {
    errno.ENOSPC: "no space left on device: free some (or move the workspace) and rerun",
    errno.EDQUOT: "disk quota exceeded: free some and rerun",
    errno.EROFS: "read-only file system: outputs must be writable",
    errno.EACCES: "permission denied: outputs must be writable by this user",
    errno.EPERM: "operation not permitted: outputs must be writable by this user",
    errno.EBUSY: "busy (a mount point?): outputs must be plain folders",
}


def disk_error(err: OSError) -> str:
    """One line for a disk or permission fault; previous outputs were left as they were."""
    where = err.filename or "writing the outputs"
    return (
        f"{where}: {DISK_ERRORS.get(err.errno or 0, err.strerror)} (earlier outputs are unchanged)"
    )


def recipe_argument(recipes: list[str], argv: list[str] | None = None) -> str:
    """The recipe a per-recipe stage (`train@<name>`, `evaluate@<name>`) was started for: its one
    command-line argument, which must name one of `recipes` (DlreproError otherwise)."""
    from dlrepro.errors import ConfigError

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in recipes:
        given = " ".join(args) or "nothing"
        raise ConfigError(f"expected one recipe name ({', '.join(recipes)}), got {given}")
    return args[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="dlrepro", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check-config", help="validate params.yaml and print it")
    check.add_argument("params", nargs="?", default="params.yaml")
    predict = sub.add_parser(
        "predict",
        help="classify leaf images with the exported model",
        description="Predict each image (a folder stands for its image files) with the ONNX "
        "export; exit status 1 when an image could not be read, 2 when the model cannot be used.",
    )
    predict.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    predict.add_argument(
        "--model",
        help="an .onnx export or a .ckpt checkpoint (default: models/plant_cnn.onnx, else the "
        "training checkpoint)",
    )
    predict.add_argument("--format", choices=("text", "json", "csv"), default="text")
    predict.add_argument("--batch-size", type=_positive_int, default=32, metavar="N")
    from dlrepro.search.commands import add_parser as add_search

    add_search(sub)
    args = parser.parse_args(argv)
    if args.command == "check-config":
        run_stage(lambda: _check_config(args.params))
    elif args.command == "predict":
        run_stage(lambda: _predict(args))
    elif args.command == "search":
        from dlrepro.search.commands import main as search

        run_stage(lambda: search(args))


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _predict(args: argparse.Namespace) -> None:
    from dlrepro.serving.predict import run  # onnxruntime and OpenCV: only for this command

    try:
        status = run(args.paths, args.model, args.format, args.batch_size)
    except BrokenPipeError:  # `dlrepro predict folder | head`: the reader has had enough
        # Python would report the broken pipe again while flushing stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
    if status:
        sys.exit(status)


def _check_config(path: str) -> None:
    """What the check-config stage checks (every key, range and cross-key rule; each recipe's
    Trainer options), then the validated config, printed."""
    from omegaconf import OmegaConf

    from dlrepro.config import load_config
    from dlrepro.config.load import read_yaml
    from dlrepro.paths import repo_root
    from dlrepro.plant.runs import check_recipes

    cfg = load_config(path)
    check_recipes(cfg, read_yaml(path), repo_root())
    print(OmegaConf.to_yaml(OmegaConf.structured(cfg)), end="")
