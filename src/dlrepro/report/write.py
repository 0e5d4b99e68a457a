"""Writes the report's two files from the stages' outputs: markdown to read in the repository,
HTML to open in a browser."""

from __future__ import annotations

from pathlib import Path

from dlrepro import paths
from dlrepro.report.html import render_html
from dlrepro.report.load import CaseStudy, ChapterOutputs
from dlrepro.report.markdown import render_markdown


def write_report(root: Path, chapters: list[ChapterOutputs], case: CaseStudy) -> list[Path]:
    """Write reports/curriculum.md and reports/index.html from the stages' outputs."""
    reports = root / paths.REPORTS
    reports.mkdir(parents=True, exist_ok=True)
    markdown = reports / "curriculum.md"
    markdown.write_text(render_markdown(chapters, case, root))
    page = reports / "index.html"
    page.write_text(render_html(chapters, case))
    return [markdown, page]
