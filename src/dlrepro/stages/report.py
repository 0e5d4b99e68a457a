"""DVC stage `report`: the curriculum report (reports/curriculum.md, reports/index.html).

python -m dlrepro.stages.report
"""

from __future__ import annotations

from dlrepro import paths
from dlrepro.cli import run_stage
from dlrepro.config import load_config
from dlrepro.report.load import CHAPTERS, errata, load_case_study, load_chapter
from dlrepro.report.write import write_report
from dlrepro.tracking.runs import log_outcome, stage_run
from dlrepro.tracking.store import ensure_reachable


def main() -> None:
    root = paths.repo_root()
    load_config(root / "params.yaml")
    ensure_reachable()
    chapters = [load_chapter(root, name) for name in CHAPTERS]
    case = load_case_study(root)
    with stage_run("report", "curriculum", {"chapters": list(CHAPTERS)}, inputs=[]) as run:
        written = write_report(root, chapters, case)
        mismatches = len(errata(chapters, case))
        log_outcome(run.info.run_id, {"errata": mismatches}, {}, written)
    print(f"report: {mismatches} errata; open {written[1].relative_to(root)} in a browser")


if __name__ == "__main__":
    run_stage(main, sweep=True)
