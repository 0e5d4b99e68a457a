"""The chapter stages' and the case study's outputs, read back from disk, and the errata in them.

A chapter is its metrics JSON, findings, trace and PNGs; the case study is the prepare stage's
data summary and each recipe's train and evaluate outputs. Nothing here recomputes a result: the
report shows exactly what the stages wrote.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlrepro import paths

# The report's chapters, in the text's order: name (package dlrepro.chapters.<name>, stage
# `curriculum-<name>`, config key curriculum.<name>) -> title.
CHAPTERS = {
    "perceptron": "1. Perceptron",
    "mlp_xor": "2. Multi-layer perceptron for XOR",
    "backprop": "3. Forward and backward propagation",
    "activations": "4. Activation functions",
    "losses": "5. Loss functions",
    "optimizers": "6. Optimizers",
    "keras_xor": "7. Feed-forward network (the text's Keras example)",
}
CASE_STUDY_TITLE = "8. Case study: plant disease detection"


@dataclass
class ChapterOutputs:
    name: str
    title: str
    metrics: dict[str, Any]
    findings: list[dict[str, Any]]
    trace: str
    framework: str
    figures: list[Path]


def load_chapter(root: Path, name: str) -> ChapterOutputs:
    report_dir = root / paths.REPORTS / "curriculum" / name
    return ChapterOutputs(
        name=name,
        title=CHAPTERS[name],
        metrics=json.loads((root / paths.METRICS / "curriculum" / f"{name}.json").read_text()),
        findings=json.loads((report_dir / "findings.json").read_text()),
        trace=(report_dir / "trace.txt").read_text(),
        framework=(report_dir / "framework.txt").read_text(),
        figures=sorted((root / paths.PLOTS / "curriculum" / name).glob("*.png")),
    )


@dataclass
class RecipeOutcome:
    """One recipe's train and evaluate stages as they left it (metrics/*/<name>.json, plots)."""

    name: str
    train: dict[str, Any]
    evaluate: dict[str, Any]
    figures: list[Path]


@dataclass
class CaseStudy:
    """The plant-disease case study as its stages left it (prepare, then train and evaluate per
    recipe); `recipes` starts with the text's own."""

    data: dict[str, Any]
    recipes: list[RecipeOutcome]
    figures: list[Path]

    @property
    def text_recipe(self) -> RecipeOutcome:
        return next(r for r in self.recipes if r.name == TEXT_RECIPE)

    @property
    def findings(self) -> list[dict[str, Any]]:
        """The text's printed lines against the reproduction's (Lightning on dlrepro's data)."""
        counts = {split: sum(per.values()) for split, per in self.data["counts"].items()}
        classes = len(self.data["classes"])
        # flow_from_directory counts a folder: dlrepro's train and val together come from train/,
        # and design too when carved from it (data.design_fraction), not from a design/ folder
        carved = counts.get("design", 0) if self.data.get("design_fraction") is not None else 0
        folders = {"train": counts["train"] + counts["val"] + carved, "test": counts["test"]}
        held_out = f"; {counts['val']} of them are held out as val" + (
            f", {carved} as design" if carved else ""
        )
        text_found = {"train": 800, "test": 200}
        rows = [
            _finding(
                f"flow_from_directory, {split}",
                f"Found {text_found[split]} images belonging to 2 classes.",
                f"Found {folders[split]} images belonging to {classes} classes.",
                "same dataset layout and size" + (held_out if split == "train" else ""),
            )
            for split in ("train", "test")
        ]
        text = self.text_recipe
        accuracy = f"Test Accuracy: {text.evaluate['accuracy']:.2f}"
        rows.append(
            _finding(
                "model.evaluate(test_data)",
                "Test Accuracy: 0.92",
                accuracy,
                "the text's photos are not shipped; this is the same CNN and recipe on the "
                "generated leaves (or on the dataset set in data.path), so only the procedure "
                "is comparable",
            )
        )
        best, epochs = text.train["best_val_acc"], text.train["epochs"]
        if best is not None:  # None: the text recipe was set to fit on train+val, no val scores
            rows.append(
                _finding(
                    "model.fit(..., validation_data=test_data): what the validation accuracy means",
                    "the test split watches every epoch",
                    f"best of {epochs} epochs on the data it was chosen on: {best:.2f}; the "
                    f"{text.evaluate['selected_on']} model on the untouched test split: "
                    f"{text.evaluate['accuracy']:.2f}",
                    "a score is optimistic on the data a choice was made on: choosing the best "
                    "epoch on test (as dlrepro did before) reports the maximum of noisy scores; "
                    "dlrepro selects on a val split carved from train and touches test once",
                )
            )
        classes = text.evaluate["classes"]
        if classes == ["Diseased", "Healthy"]:
            rows.append(
                _finding(
                    "predict_image: which class the sigmoid output means",
                    '"Diseased" if pred > 0.5 else "Healthy"',
                    f"output = P({classes[1]}): flow_from_directory numbers classes "
                    f"alphabetically ({classes[0]}=0, {classes[1]}=1)",
                    "the text's rule is inverted: with its own folders, pred > 0.5 means "
                    "Healthy; dlrepro names classes from the model's stored class list",
                )
            )
        rows.append(
            _finding(
                "predict_image: colour order",
                "cv2.imread(img_path) fed to the model as is",
                "cv2.imread gives BGR; the model trained on RGB (Keras loads RGB)",
                "the text's custom-image prediction swaps red and blue; dlrepro converts to RGB",
            )
        )
        return rows


def _finding(what: str, text: str, ours: str, cause: str) -> dict[str, Any]:
    return {
        "what": what,
        "text": text,
        "code": ours,
        "framework": "",
        "cause": cause,
        "matches": text == ours,
    }


TEXT_RECIPE = "text"


def load_case_study(root: Path) -> CaseStudy:
    """Every recipe with metrics in metrics/evaluate/, the text's first, then by name."""
    names = sorted(
        (p.stem for p in (root / paths.METRICS / "evaluate").glob("*.json")),
        key=lambda name: (name != TEXT_RECIPE, name),
    )
    recipes = [
        RecipeOutcome(
            name=name,
            train=json.loads((root / paths.METRICS / "train" / f"{name}.json").read_text()),
            evaluate=json.loads((root / paths.METRICS / "evaluate" / f"{name}.json").read_text()),
            figures=[
                *sorted((root / paths.PLOTS / "train" / name).glob("*.png")),
                *sorted((root / paths.PLOTS / "evaluate" / name).glob("*.png")),
            ],
        )
        for name in names
    ]
    return CaseStudy(
        data=json.loads((root / paths.REPORTS / "data.json").read_text()),
        recipes=recipes,
        figures=[root / paths.PLOTS / "data" / "leaves.png"],
    )


def errata(
    chapters: list[ChapterOutputs], case: CaseStudy | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Every printed result of the text that its own code (or the reproduction) does not give."""
    rows = [(ch.title, f) for ch in chapters for f in ch.findings if not f["matches"]]
    if case is not None:
        rows += [(CASE_STUDY_TITLE, f) for f in case.findings if not f["matches"]]
    return rows
