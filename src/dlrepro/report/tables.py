"""What the report's tables and paragraphs hold, shared by its markdown and HTML renderings.

Headers, rows and the fixed text beside them, built from the loaded outputs (`dlrepro.report.load`)
as strings, so both renderings show the same cells and differ only in markup.
"""

from __future__ import annotations

import re
from typing import Any

from dlrepro.config.load import flatten
from dlrepro.report.load import CASE_STUDY_TITLE, CaseStudy, ChapterOutputs

ERRATA_TITLE = "Errata: where the text's printed output differs from its own code"
RECIPES_TITLE = "Recipes, side by side (test split)"
# A number printed with more than 6 significant digits (float32 noise such as 0.7599999904632568)
LONG_NUMBER = re.compile(r"(?<![\w.])-?\d+\.\d{7,}(?:e[-+]?\d+)?(?![\w.])")

INTRO = (
    "Each chapter of the text, run two ways: its own numpy code as written (`text_code`) "
    "and a torch / Lightning version. Text is what the text prints; code is what its code really "
    "prints; framework is the torch / Lightning value. Regenerate with `dvc repro`."
)

HONEST_EVALUATION = (
    "How these numbers were measured. The text fits with validation_data=test_data, so the "
    "test split watches every epoch, and a checkpoint chosen on it (as dlrepro once did) reports "
    "the best of several noisy scores on the very data it was chosen on. Here a validation split "
    "is carved out of train (data.val_fraction, per class, seeded; reports/data.json lists it): "
    "checkpoint selection and early stopping read val, and the test split is read once, by "
    "evaluate. The text recipe is the text's program as Keras runs it (10 epochs, the final "
    "model evaluated, nothing selected), so its figure is comparable with the Keras program's. "
    "A recipe fitted on train+val (by default the tuned one, whose settings were chosen with val "
    "and 1,200 further generated leaves, docs/recipe-search.md, where selecting its best val "
    "epoch gained nothing) learns from val too once its settings are fixed, so it has no val "
    "score, and its last epoch is evaluated. Views per image: how many of the image's 8 "
    "symmetries each test answer averages (validation, and so best val/acc, sees one). Training "
    "arithmetic: the Trainer's precision (bf16-mixed: bfloat16 products, float32 weights; "
    "evaluation runs in float32). The old "
    "way's optimism shows in the errata row "
    "on validation_data. Training wall time is not a reproducible output: each train run logs "
    "it to MLflow (fit_seconds), and `make bench` measures it."
)

FINDING_HEADER = ["what", "text prints", "code prints", "framework", "match"]
ERRATA_HEADER = ["chapter", "what", "text prints", "code prints", "framework", "cause"]
CASE_STUDY_HEADER = ["what", "text prints", "dlrepro prints", "match"]
RECIPE_HEADER = [
    "recipe",
    "fit on (images)",
    "selected on",
    "views per image",
    "epochs",
    "parameters",
    "training arithmetic",
    "best val/acc (its epoch)",
    "test accuracy",
    "precision",
    "recall",
    "F1",
    "ROC AUC",
]
CASE_STUDY_FIGURES = ("accuracy", "precision", "recall", "f1", "roc_auc")


def best_val(train: dict[str, Any]) -> str:
    """The best val/acc and its epoch (a metrics file from before best_epoch existed has none;
    a fit on train+val has no val score at all)."""
    if train["best_val_acc"] is None:
        return "none: val was learnt from"
    epoch = train.get("best_epoch")
    return fmt(train["best_val_acc"]) + ("" if epoch is None else f" (epoch {epoch})")


def recipe_rows(case: CaseStudy) -> list[list[str]]:
    return [
        [
            r.name,
            f"{r.train.get('fit_on', 'train')} ({r.train['train_images']})",
            r.evaluate["selected_on"],
            str(r.evaluate["views_per_image"]),
            str(r.train["epochs"]),
            f"{r.train['parameters']:,}",
            r.train.get("precision", "-"),  # Lightning's name: 32-true, bf16-mixed, ...
            best_val(r.train),
            *(fmt(r.evaluate[k]) for k in CASE_STUDY_FIGURES),
        ]
        for r in case.recipes
    ]


def key_figures(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """Scalar metrics, flattened, for a compact table (lists stay in the JSON file)."""
    return [
        (key, fmt(value))
        for key, value in flatten(metrics).items()
        if isinstance(value, bool | int | float | str) or value is None
    ]


def fmt(value: Any) -> str:
    """The report's one rounding rule: 6 significant digits."""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def rounded(text: str) -> str:
    """`text` with every long number in it (a chapter's printed value) given to fmt's rule."""
    return LONG_NUMBER.sub(lambda m: fmt(float(m.group())), text)


def contents(chapters: list[ChapterOutputs], case: CaseStudy) -> list[tuple[str, str]]:
    """The report's table of contents, in page order: (anchor, title)."""
    return [
        ("errata", ERRATA_TITLE),
        *((ch.name, ch.title) for ch in chapters),
        ("case-study", CASE_STUDY_TITLE),
        ("recipes", RECIPES_TITLE),
    ]


def finding_row(f: dict[str, Any]) -> list[str]:
    cells = [f["what"], f["text"], f["code"], f["framework"]]
    return [*map(rounded, cells), "yes" if f["matches"] else "no"]


def case_row(f: dict[str, Any]) -> list[str]:
    return [*map(rounded, [f["what"], f["text"], f["code"]]), "yes" if f["matches"] else "no"]


def errata_rows(rows: list[tuple[str, dict[str, Any]]]) -> tuple[list[list[str]], list[str]]:
    """The errata table's rows, and its causes, each once: a row's last cell numbers its cause
    ("(2)") in that list, so a cause several findings share is written once."""
    causes: list[str] = []
    table = []
    for title, f in rows:
        if f["cause"] not in causes:
            causes.append(f["cause"])
        cells = [title, *map(rounded, [f["what"], f["text"], f["code"], f["framework"]])]
        table.append([*cells, f"({causes.index(f['cause']) + 1})"])
    return table, causes


def case_figures(case: CaseStudy) -> list[tuple[str, str]]:
    data = case.data
    counts = "; ".join(
        f"{split}: " + ", ".join(f"{c} {n}" for c, n in per.items())
        for split, per in data["counts"].items()
    )
    rows = [("dataset", data["source"]), ("images per class", counts)]
    rows.append(("skipped files", str(len(data["skipped"]))))
    rows.append(("leaks dropped", str(len(data["leaks"]))))
    return rows
