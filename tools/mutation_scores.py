"""Per-module mutation scores from mutmut's results (`make mutation` runs it after `mutmut run`).

mutmut 3 keeps one `mutants/<source path>.meta` JSON file per mutated module, mapping each mutant
to the exit code of the tests run against it (1 or 3: killed, 0: survived, 33/5: no test ran,
36 and the SIGXCPU codes: timed out, None: not checked). The score is killed / checked: a
timed-out mutant is listed apart (on a busy machine a slow test times out too) and one that no
test reaches counts against it. Prints a markdown table per module and in all, and the
surviving mutants to review (`mutmut show <name>`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

KILLED = {1, 3}
TIMEOUT = {36, 24, -24, 152, 255}
NO_TESTS = {5, 33}
SURVIVED = {0}


def scores(mutants: Path) -> tuple[list[tuple[str, dict[str, int]]], list[str]]:
    """[(module, {killed, timeout, survived, no tests, checked, unchecked})] and the names of
    the mutants that survived or that no test reached."""
    rows, survivors = [], []
    for meta in sorted(mutants.rglob("*.py.meta")):
        codes = json.loads(meta.read_text()).get("exit_code_by_key", {})
        if not codes:
            continue
        count = {
            "killed": sum(code in KILLED for code in codes.values()),
            "timeout": sum(code in TIMEOUT for code in codes.values()),
            "survived": sum(code in SURVIVED for code in codes.values()),
            "no tests": sum(code in NO_TESTS for code in codes.values()),
            "unchecked": sum(code is None for code in codes.values()),
        }
        count["checked"] = len(codes) - count["unchecked"]
        survivors += sorted(n for n, c in codes.items() if c in SURVIVED or c in NO_TESTS)
        rows.append((meta.relative_to(mutants).as_posix().removesuffix(".meta"), count))
    return rows, survivors


def main() -> int:
    rows, survivors = scores(Path("mutants"))
    if not rows:
        print("no mutmut results under mutants/: run `mutmut run` first", file=sys.stderr)
        return 1
    columns = ("killed", "timeout", "survived", "no tests", "checked", "unchecked")
    print("| module | " + " | ".join(columns) + " | score |")
    print("|---" * (len(columns) + 2) + "|")
    total = dict.fromkeys(columns, 0)
    for module, count in rows:
        total = {c: total[c] + count[c] for c in columns}
        print(_row(f"`{module}`", count, columns))
    print(_row("all", total, columns))
    print(f"\n{len(survivors)} mutants survived or reached by no test (`mutmut show <name>`):")
    print("\n".join(f"  {name}" for name in survivors))
    return 0


def _row(name: str, count: dict[str, int], columns: tuple[str, ...]) -> str:
    score = f"{count['killed'] / count['checked']:.0%}" if count["checked"] else "-"
    return f"| {name} | " + " | ".join(str(count[c]) for c in columns) + f" | {score} |"


if __name__ == "__main__":
    sys.exit(main())
