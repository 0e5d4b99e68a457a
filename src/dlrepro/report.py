"""The curriculum report: what the text printed, beside what its code and the framework give.

Reads the chapter stages' outputs back from disk (metrics JSON, traces, findings, PNGs) and writes
`reports/curriculum.md` (images linked) and `reports/index.html` (images embedded, no CDN, opens
offline). Nothing here recomputes a result: the report shows exactly what the stages wrote.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlrepro import paths
from dlrepro.curriculum import CHAPTERS
from dlrepro.tracking import flatten

TRACE_LINES_IN_MARKDOWN = 40
FINDING_HEADER = ["what", "text prints", "code prints", "framework", "match"]


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


def errata(chapters: list[ChapterOutputs]) -> list[tuple[str, dict[str, Any]]]:
    """Every printed result of the text that its own code does not reproduce."""
    return [(ch.title, f) for ch in chapters for f in ch.findings if not f["matches"]]


def key_figures(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """Scalar metrics, flattened, for a compact table (lists stay in the JSON file)."""
    return [
        (key, _fmt(value))
        for key, value in flatten(metrics).items()
        if isinstance(value, bool | int | float | str) or value is None
    ]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return (
            "| "
            + " | ".join(str(c).replace("|", "\\|").replace("\n", "<br>") for c in cells)
            + " |"
        )

    return [line(header), "|" + "---|" * len(header), *(line(row) for row in rows)]


def _finding_row(f: dict[str, Any]) -> list[str]:
    return [f["what"], f["text"], f["code"], f["framework"], "yes" if f["matches"] else "no"]


def render_markdown(chapters: list[ChapterOutputs], root: Path) -> str:
    out = [
        "# The curriculum, reproduced",
        "",
        "Each chapter of the text, run two ways: its own numpy code as written (`dlrepro.scratch`) "
        "and a torch / Lightning version. *Text* is what the text prints; *code* is what its code "
        "really prints; *framework* is the torch / Lightning value. Regenerate with `dvc repro`.",
        "",
        "## Errata: where the text's printed output differs from its own code",
        "",
        *_md_table(
            ["chapter", "what", "text prints", "code prints", "framework", "cause"],
            [
                [t, f["what"], f["text"], f["code"], f["framework"], f["cause"]]
                for t, f in errata(chapters)
            ],
        ),
    ]
    for ch in chapters:
        out += ["", f"## {ch.title}", ""]
        out += _md_table(FINDING_HEADER, [_finding_row(f) for f in ch.findings])
        out += ["", "Key figures:", ""]
        out += _md_table(["metric", "value"], [list(kv) for kv in key_figures(ch.metrics)])
        trace = ch.trace.strip().splitlines()
        shown = trace[:TRACE_LINES_IN_MARKDOWN]
        out += ["", "What the text's code prints:", "", "```", *shown, "```"]
        if len(trace) > len(shown):
            rest = len(trace) - len(shown)
            out.append(f"({rest} more lines in `curriculum/{ch.name}/trace.txt`)")
        out += ["", "Framework version:", "", "```", *ch.framework.strip().splitlines(), "```", ""]
        for fig in ch.figures:
            out.append(f"![{fig.stem}]({fig.relative_to(root / paths.REPORTS.parent).as_posix()})")
    return "\n".join(out) + "\n"


def render_html(chapters: list[ChapterOutputs]) -> str:
    def table(header: list[str], rows: list[list[str]], bad_col: int | None = None) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = []
        for row in rows:
            cls = ' class="bad"' if bad_col is not None and row[bad_col] == "no" else ""
            cells = "".join(f"<td>{html.escape(str(c))}</td>" for c in row)
            body.append(f"<tr{cls}>{cells}</tr>")
        return f"<table><tr>{head}</tr>{''.join(body)}</table>"

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>dlrepro: the curriculum</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 6px;"
        "font-size:13px;vertical-align:top;white-space:pre-wrap}tr.bad{background:#fde2e2}"
        "img{max-width:100%;border:1px solid #eee}pre{background:#f6f6f6;padding:6px;"
        "overflow:auto;max-height:30em}</style></head><body>",
        "<h1>The curriculum, reproduced</h1>",
        "<p>Each chapter of the text, run two ways: its own numpy code as written and a torch / "
        "Lightning version. <i>Text</i> is what the text prints; <i>code</i> is what its code "
        "really prints; <i>framework</i> is the torch / Lightning value.</p>",
        "<h2>Errata: where the text's printed output differs from its own code</h2>",
        table(
            ["chapter", "what", "text prints", "code prints", "framework", "cause"],
            [
                [t, f["what"], f["text"], f["code"], f["framework"], f["cause"]]
                for t, f in errata(chapters)
            ],
        ),
    ]
    for ch in chapters:
        rows = [_finding_row(f) for f in ch.findings]
        parts += [
            f"<h2 id='{ch.name}'>{html.escape(ch.title)}</h2>",
            table(FINDING_HEADER, rows, bad_col=4),
            "<details><summary>Key figures</summary>",
            table(["metric", "value"], [list(kv) for kv in key_figures(ch.metrics)]),
            "</details>",
            "<details><summary>What the text's code prints</summary>",
            f"<pre>{html.escape(ch.trace)}</pre></details>",
            "<details open><summary>Framework version</summary>",
            f"<pre>{html.escape(ch.framework)}</pre></details>",
        ]
        for fig in ch.figures:
            data = base64.b64encode(fig.read_bytes()).decode()
            parts.append(f"<p><img alt='{fig.stem}' src='data:image/png;base64,{data}'></p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_report(root: Path, loaded: list[ChapterOutputs]) -> list[Path]:
    """Write reports/curriculum.md and reports/index.html from the chapters' outputs."""
    reports = root / paths.REPORTS
    reports.mkdir(parents=True, exist_ok=True)
    markdown = reports / "curriculum.md"
    markdown.write_text(render_markdown(loaded, root))
    page = reports / "index.html"
    page.write_text(render_html(loaded))
    return [markdown, page]
