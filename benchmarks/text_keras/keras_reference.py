"""Runs the text's Keras case study (text_program.py, verbatim) and records what it did.

    .venv-keras/bin/python benchmarks/text_keras/keras_reference.py DATA_ROOT RESULT_JSON
        [--epochs N] [--seed S]

A standalone script for the TensorFlow venv that `make keras-env` builds: it imports nothing from
dlrepro (which is not installed there), and `make bench` (benchmarks.vs_keras) starts it as a
subprocess. Its folder holds only the text's program, because a script's folder comes first on
its `sys.path` (a `keras.py` there would hide Keras). From DATA_ROOT, the folder that holds
`plant_disease_dataset/`, it executes the text's program as written and, around it, only
observes: `Model.fit` is wrapped to time the fit and read the number of training images, and
`Model.evaluate` to keep the result the program prints with two decimals. Two values are passed
in, as the bench's contract allows: the epochs (replacing the text's `epochs=10` when --epochs is
given) and a seed for `keras.utils.set_random_seed`, which the text does not set, so that a
rerun repeats its figures.
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import time
from pathlib import Path

PROGRAM = Path(__file__).with_name("text_program.py")


def peak_rss_bytes() -> int:
    """VmHWM of this process: the Keras program's peak resident memory."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_root", type=Path)
    parser.add_argument("result", type=Path)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result = args.result.resolve()  # before the program's folder becomes the working directory

    import tensorflow as tf

    observed: dict = {}
    fit, evaluate = tf.keras.Model.fit, tf.keras.Model.evaluate

    def timed_fit(model, x=None, *rest, **kwargs):
        if args.epochs is not None:
            kwargs["epochs"] = args.epochs
        start = time.perf_counter()
        history = fit(model, x, *rest, **kwargs)
        observed["fit_s"] = time.perf_counter() - start
        observed["epochs"] = kwargs.get("epochs", 1)
        observed["train_images"] = int(x.samples)  # a DirectoryIterator in the text
        observed["history"] = {key: [float(v) for v in vs] for key, vs in history.history.items()}
        return history

    def kept_evaluate(model, *rest, **kwargs):
        result = evaluate(model, *rest, **kwargs)
        # fit() validates through evaluate(return_dict=True); the program's own call is the last
        # one with a (loss, accuracy) list.
        if not kwargs.get("return_dict"):
            observed["test_loss"], observed["test_acc"] = (float(v) for v in result)
        return result

    tf.keras.Model.fit, tf.keras.Model.evaluate = timed_fit, kept_evaluate
    tf.keras.utils.set_random_seed(args.seed)
    os.chdir(args.data_root)
    runpy.run_path(str(PROGRAM), run_name="__main__")
    observed["fit_img_s"] = observed["train_images"] * observed["epochs"] / observed["fit_s"]
    observed["peak_rss_bytes"] = peak_rss_bytes()
    observed["tensorflow"] = tf.__version__
    result.write_text(json.dumps(observed, indent=2))


if __name__ == "__main__":
    main()
