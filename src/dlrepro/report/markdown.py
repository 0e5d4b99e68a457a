"""The report as markdown (reports/curriculum.md): images linked relative to reports/, and each
chapter's trace cut to its first lines (the full trace stays in its trace.txt)."""

from __future__ import annotations

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

TRACE_LINES_IN_MARKDOWN = 40


def render_markdown(chapters: list[ChapterOutputs], case: CaseStudy, root: Path) -> str:
    def table(header: list[str], rows: list[list[str]]) -> list[str]:
        def line(cells: list[str]) -> str:
            escaped = (str(c).replace("|", "\\|").replace("\n", "<br>") for c in cells)
            return "| " + " | ".join(escaped) + " |"

        return [line(header), "|" + "---|" * len(header), *(line(row) for row in rows)]

    def image(fig: Path) -> str:
        return f"![{fig.stem}]({_from_reports(fig, root)})"

    out = ["# The curriculum, reproduced", "", INTRO, "", "Contents:", ""]
    out += [
        f"{i}. [{title}](#{anchor(title)})"
        for i, (_, title) in enumerate(contents(chapters, case), 1)
    ]
    out += ["", f"## {ERRATA_TITLE}", ""]
    rows, causes = errata_rows(errata(chapters, case))
    out += table(ERRATA_HEADER, rows)
    out += ["", "Causes:", "", *(f"{i}. {cause}" for i, cause in enumerate(causes, 1))]
    for ch in chapters:
        out += [
            "",
            f"## {ch.title}",
            "",
            *table(FINDING_HEADER, [finding_row(f) for f in ch.findings]),
        ]
        out += [
            "",
            "Key figures:",
            "",
            *table(["metric", "value"], [list(kv) for kv in key_figures(ch.metrics)]),
        ]
        trace = ch.trace.strip().splitlines()
        shown = trace[:TRACE_LINES_IN_MARKDOWN]
        out += ["", "What the text's code prints:", "", "```", *shown, "```"]
        if len(trace) > len(shown):
            out.append(
                f"({len(trace) - len(shown)} more lines in `curriculum/{ch.name}/trace.txt`)"
            )
        out += ["", "Framework version:", "", "```", *ch.framework.strip().splitlines(), "```", ""]
        out += [image(fig) for fig in ch.figures]
    out += [
        "",
        f"## {CASE_STUDY_TITLE}",
        "",
        *table(CASE_STUDY_HEADER, [case_row(f) for f in case.findings]),
    ]
    out += ["", *table(["figure", "value"], [list(kv) for kv in case_figures(case)]), ""]
    out += [image(fig) for fig in case.figures]
    out += ["", f"### {RECIPES_TITLE}", "", HONEST_EVALUATION, ""]
    out += table(RECIPE_HEADER, recipe_rows(case))
    for recipe in case.recipes:
        out += ["", f"#### Recipe `{recipe.name}`", ""]
        out += [image(fig) for fig in recipe.figures]
    return "\n".join(out) + "\n"


def anchor(title: str) -> str:
    """The anchor GitHub and MkDocs give a heading: lower case, punctuation dropped, spaces as -."""
    kept = "".join(c for c in title.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def _from_reports(fig: Path, root: Path) -> str:
    """Image links in reports/curriculum.md are relative to reports/."""
    return "../" + fig.relative_to(root).as_posix()
