"""The report as one HTML page (reports/index.html): images embedded, no CDN, so it opens
offline; findings that do not match are highlighted."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from dlrepro.report.load import CASE_STUDY_TITLE, CaseStudy, ChapterOutputs, errata
from dlrepro.report.tables import (
    CASE_STUDY_HEADER,
    ERRATA_HEADER,
    ERRATA_TITLE,
    FINDING_HEADER,
    HONEST_EVALUATION,
    INTRO,
    RECIPE_HEADER,
    RECIPES_TITLE,
    case_figures,
    case_row,
    contents,
    errata_rows,
    finding_row,
    key_figures,
    recipe_rows,
)


def inline(text: str) -> str:
    """Escaped text with its markdown code spans (`x`) and bold (**x**) rendered."""
    escaped = html.escape(text)
    escaped = re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escaped)


def render_html(chapters: list[ChapterOutputs], case: CaseStudy) -> str:
    def table(header: list[str], rows: list[list[str]], bad_col: int | None = None) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        body = []
        for row in rows:
            cls = ' class="bad"' if bad_col is not None and row[bad_col] == "no" else ""
            cells = "".join(f"<td>{inline(str(c))}</td>" for c in row)
            body.append(f"<tr{cls}>{cells}</tr>")
        return f"<table><tr>{head}</tr>{''.join(body)}</table>"

    def image(fig: Path) -> str:
        data = base64.b64encode(fig.read_bytes()).decode()
        return f"<p><img alt='{fig.stem}' src='data:image/png;base64,{data}'></p>"

    rows, causes = errata_rows(errata(chapters, case))
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>dlrepro: the curriculum</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>The curriculum, reproduced</h1>",
        f"<p>{inline(INTRO)}</p>",
        "<nav id='contents'><h2>Contents</h2><ol>",
        *(f"<li><a href='#{a}'>{html.escape(t)}</a></li>" for a, t in contents(chapters, case)),
        "</ol></nav>",
        f"<h2 id='errata'>{html.escape(ERRATA_TITLE)}</h2>",
        table(ERRATA_HEADER, rows),
        "<p>Causes:</p><ol class='causes'>",
        *(f"<li>{inline(cause)}</li>" for cause in causes),
        "</ol>",
    ]
    for ch in chapters:
        parts += [
            f"<h2 id='{ch.name}'>{html.escape(ch.title)}</h2>",
            table(FINDING_HEADER, [finding_row(f) for f in ch.findings], bad_col=4),
            "<details><summary>Key figures</summary>",
            table(["metric", "value"], [list(kv) for kv in key_figures(ch.metrics)]),
            "</details>",
            "<details><summary>What the text's code prints</summary>",
            f"<pre>{html.escape(ch.trace)}</pre></details>",
            "<details open><summary>Framework version</summary>",
            f"<pre>{html.escape(ch.framework)}</pre></details>",
            *(image(fig) for fig in ch.figures),
        ]
    parts += [
        f"<h2 id='case-study'>{html.escape(CASE_STUDY_TITLE)}</h2>",
        table(CASE_STUDY_HEADER, [case_row(f) for f in case.findings], bad_col=3),
        table(["figure", "value"], [list(kv) for kv in case_figures(case)]),
        *(image(fig) for fig in case.figures),
        f"<h3 id='recipes'>{html.escape(RECIPES_TITLE)}</h3>",
        f"<p>{inline(HONEST_EVALUATION)}</p>",
        table(RECIPE_HEADER, recipe_rows(case)),
    ]
    for recipe in case.recipes:
        parts += [
            f"<h4 id='recipe-{recipe.name}'>Recipe {html.escape(recipe.name)}</h4>",
            *(image(fig) for fig in recipe.figures),
        ]
    parts += [
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


STYLE = (
    "body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 6px;"
    "font-size:13px;vertical-align:top;white-space:pre-wrap}tr.bad{background:#fde2e2}"
    "img{max-width:100%;border:1px solid #eee}pre{background:#f6f6f6;padding:6px;"
    "overflow:auto;max-height:30em}"
)
