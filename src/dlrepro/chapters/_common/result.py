"""What a chapter hands back to its stage: metrics, printed traces, figures, curves, findings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dlrepro import paths
from dlrepro.outputs import new_dir, save_figure, write_csv, write_json


@dataclass
class Finding:
    """One result the text prints, set beside what its code and the framework version give.

    `text` is copied from the text; `code` is what the text's own code prints when run
    (each chapter's text_code); `framework` is the torch/Lightning version's value. `cause` explains
    a mismatch between text and code; the report's errata table lists every mismatch.
    """

    what: str
    text: str
    code: str
    framework: str = ""
    cause: str = ""

    @property
    def matches(self) -> bool:
        return self.text == self.code


@dataclass
class ChapterResult:
    """Everything a chapter produced; the stage decides where it goes (see stages/curriculum.py).

    metrics:   JSON-able summary, written to metrics/curriculum/<chapter>.json (DVC metrics)
    trace:     what the text's code prints, run as written (reports/curriculum/<chapter>/trace.txt)
    framework_trace: the framework version's equivalent output (.../framework.txt)
    figures:   matplotlib figures -> plots/curriculum/<chapter>/<name>.png
    curves:    rows of {x, y, ...} -> plots/curriculum/<chapter>/<name>.csv (DVC plots)
    series:    metric name -> [(step, value)] logged to MLflow with steps
    findings:  text-vs-code comparisons for the report's errata
    """

    metrics: dict[str, Any]
    trace: str = ""
    framework_trace: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)

    def write(self, chapter: str, root: Path) -> list[Path]:
        """Write every output of `curriculum-<chapter>` (the paths dvc.yaml declares)."""
        metrics = write_json(root / paths.METRICS / "curriculum" / f"{chapter}.json", self.metrics)
        plots = root / paths.PLOTS / "curriculum" / chapter
        with new_dir(plots) as staged:
            for name, fig in self.figures.items():
                save_figure(fig, staged / f"{name}.png")
            for name, rows in self.curves.items():
                write_csv(staged / f"{name}.csv", rows)
        report = root / paths.REPORTS / "curriculum" / chapter
        with new_dir(report) as staged:
            (staged / "trace.txt").write_text(self.trace)
            (staged / "framework.txt").write_text(self.framework_trace)
            findings = [{**asdict(f), "matches": f.matches} for f in self.findings]
            write_json(staged / "findings.json", findings)
        return [metrics, plots, report]
