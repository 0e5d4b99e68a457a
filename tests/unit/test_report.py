"""The case study's part of the report: both recipes side by side, the honest-evaluation
paragraph, and the old way's optimism as an erratum, read back from the stages' outputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

from dlrepro.report.html import render_html
from dlrepro.report.load import ChapterOutputs, errata, load_case_study
from dlrepro.report.markdown import TRACE_LINES_IN_MARKDOWN, anchor, render_markdown
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


def chapter(name: str, findings: list[dict], trace_lines: int = 3) -> ChapterOutputs:
    return ChapterOutputs(
        name=name,
        title=f"1. The {name}",
        metrics={"loss": {"final": 0.5238510966300964}, "epochs": 3, "curve": [1.0, 2.0]},
        findings=findings,
        trace="\n".join(f"line {i}" for i in range(trace_lines)),
        framework="torch says <b>",
        figures=[],
    )


def finding(what: str, matches: bool, cause: str = "") -> dict:
    return {"what": what, "text": "0.5", "code": "0.7599999904632568", "framework": "a|b"} | {
        "matches": matches,
        "cause": cause,
    }


FINDINGS = [
    finding("<script>x</script>", False, "float32 rounding in `print`"),
    finding("weights", True),
    finding("bias", False, "float32 rounding in `print`"),
    finding("epochs", False, "the text ran another **seed**"),
]


def test_the_html_report_escapes_highlights_groups_and_links(tmp_path):
    case = load_case_study(case_root(tmp_path))
    for figure in [*case.figures, *(f for r in case.recipes for f in r.figures)]:
        figure.parent.mkdir(parents=True, exist_ok=True)
        figure.write_bytes(b"not really a png")  # embedded as base64, never decoded
    page = render_html([chapter("perceptron", FINDINGS)], case)
    assert "<script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page
    assert "torch says &lt;b&gt;" in page
    # the contents link every section, the case study included, and each target exists
    nav = page[page.index("<nav") : page.index("</nav>")]
    targets = re.findall(r"href='#([^']+)'", nav)
    assert targets == ["errata", "perceptron", "case-study", "recipes"]
    for target in targets:
        assert f"id='{target}'" in page
    # three errata rows (mismatches only), each naming its cause by number; causes listed once
    errata_table = page[page.index("id='errata'") : page.index("class='causes'")]
    ours = re.findall(r"<tr><td>1\. The perceptron</td>.*?<td>\((\d+)\)</td></tr>", errata_table)
    assert ours == ["1", "1", "2"]  # mismatches only; the shared cause under one number
    causes = page[page.index("class='causes'") : page.index("</ol>", page.index("class='causes'"))]
    assert "float32 rounding in <code>print</code>" in causes
    assert "<strong>seed</strong>" in causes
    # the chapter's findings: mismatches highlighted, matches not
    section = page[page.index("id='perceptron'") : page.index("id='case-study'")]
    assert section.count('<tr class="bad">') == 3
    assert "0.76" in section and "0.7599999904632568" not in page  # one rounding rule
    assert "<td>loss.final</td><td>0.523851</td>" in section  # key figures, lists left out
    assert "curve" not in section


def test_the_markdown_report_escapes_pipes_cuts_long_traces_and_links_its_contents(tmp_path):
    case = load_case_study(case_root(tmp_path))
    shown = TRACE_LINES_IN_MARKDOWN
    text = render_markdown([chapter("perceptron", FINDINGS, trace_lines=shown + 5)], case, tmp_path)
    assert "| a\\|b |" in text  # a pipe in a cell does not split the row
    assert f"line {shown - 1}" in text and f"line {shown}\n" not in text
    assert "(5 more lines in `curriculum/perceptron/trace.txt`)" in text
    headings = {anchor(line.lstrip("# ")) for line in text.splitlines() if line.startswith("#")}
    links = re.findall(r"\]\(#([^)]+)\)", text)
    assert len(links) == 4 and set(links) <= headings
    assert text.count("float32 rounding in `print`") == 1  # the shared cause, once
