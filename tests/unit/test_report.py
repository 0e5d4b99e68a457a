"""The case study's part of the report: both recipes side by side, the honest-evaluation
paragraph, and the old way's optimism as an erratum, read back from the stages' outputs."""

from __future__ import annotations

import json
from pathlib import Path

from dlrepro.report.load import errata, load_case_study
from dlrepro.report.markdown import render_markdown
from dlrepro.report.tables import HONEST_EVALUATION


def write(path: Path, content: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))


def case_root(tmp_path: Path) -> Path:
    counts = {
        "train": {"Diseased": 340, "Healthy": 340},
        "val": {"Diseased": 60, "Healthy": 60},
        "test": {"Diseased": 100, "Healthy": 100},
    }
    write(
        tmp_path / "reports" / "data.json",
        {"source": "data/x", "classes": ["Diseased", "Healthy"], "counts": counts}
        | {"skipped": [], "leaks": []},
    )
    for name, fit_on, images, best, best_epoch, test, selected_on, views, epochs, precision in (
        ("tuned", "train+val", 800, None, None, 0.955, "last_epoch", 8, 30, "bf16-mixed"),
        ("text", "train", 680, 0.81, 6, 0.745, "last_epoch", 1, 10, "32-true"),
    ):
        write(
            tmp_path / "metrics" / "train" / f"{name}.json",
            {"best_val_acc": best, "best_epoch": best_epoch, "epochs": epochs}
            | {"fit_on": fit_on, "train_images": images}
            | {"parameters": 1234, "precision": precision},
        )
        scores = {k: test for k in ("accuracy", "precision", "recall", "f1", "roc_auc")}
        write(
            tmp_path / "metrics" / "evaluate" / f"{name}.json",
            {"recipe": name, "selected_on": selected_on, "classes": ["Diseased", "Healthy"]}
            | {"views_per_image": views}
            | scores,
        )
    return tmp_path


def test_recipes_are_side_by_side_with_the_text_first(tmp_path):
    case = load_case_study(case_root(tmp_path))
    assert [r.name for r in case.recipes] == ["text", "tuned"]
    markdown = render_markdown([], case, tmp_path)
    assert HONEST_EVALUATION in markdown
    rows = [line for line in markdown.splitlines() if line.startswith(("| text |", "| tuned |"))]
    text = "| text | train (680) | last_epoch | 1 | 10 | 1,234 | 32-true | 0.81 (epoch 6) | 0.745 |"
    assert rows[0].startswith(text)
    assert rows[1].startswith(
        "| tuned | train+val (800) | last_epoch | 8 | 30 | 1,234 | bf16-mixed | "
        "none: val was learnt from | 0.955 |"
    )


def test_the_folder_counts_and_the_selection_optimism_are_findings(tmp_path):
    case = load_case_study(case_root(tmp_path))
    found = {f["what"]: f for f in case.findings}
    train = found["flow_from_directory, train"]
    assert train["code"] == "Found 800 images belonging to 2 classes." and train["matches"]
    assert "120 of them are held out as val" in train["cause"]
    optimism = found[
        "model.fit(..., validation_data=test_data): what the validation accuracy means"
    ]
    assert "best of 10 epochs on the data it was chosen on: 0.81" in optimism["code"]
    assert "untouched test split: 0.74" in optimism["code"]  # the text recipe's, not tuned's
    assert optimism in [f for _, f in errata([], case)]
    assert found["model.evaluate(test_data)"]["code"] == "Test Accuracy: 0.74"
