"""Per-module mutation scores from mutmut's results (`make mutation` runs it after `mutmut run`).

mutmut 3 keeps one `mutants/<source path>.meta` JSON file per mutated module, mapping each mutant
to the exit code of the tests run against it (1 or 3: killed, 0: survived, 33/5: no test ran,
36 and the SIGXCPU codes: timed out, None: not checked). A timed-out mutant counts as killed (the
tests did notice: they hung); "no tests" counts as survived. Prints a markdown table, the score
of each module and of all of them, and the surviving mutants to review (`mutmut show <name>`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

KILLED = {1, 3, 36, 24, -24, 152, 255}
SURVIVED = {0, 5, 33}


def scores(mutants: Path) -> tuple[list[tuple[str, int, int]], list[str]]:
    """[(module, killed, total)] and the names of the surviving mutants."""
    rows, survivors = [], []
    for meta in sorted(mutants.rglob("*.py.meta")):
        codes = json.loads(meta.read_text()).get("exit_code_by_key", {})
        checked = {name: code for name, code in codes.items() if code is not None}
        if not checked:
            continue
        killed = sum(code in KILLED for code in checked.values())
        survivors += sorted(name for name, code in checked.items() if code in SURVIVED)
        rows.append((meta.relative_to(mutants).as_posix().removesuffix(".meta"), killed, len(checked)))
    return rows, survivors


def main() -> int:
    rows, survivors = scores(Path("mutants"))
    if not rows:
        print("no mutmut results under mutants/: run `mutmut run` first", file=sys.stderr)
        return 1
    print("| module | killed | mutants | score |\n|---|---|---|---|")
    for module, killed, total in rows:
        print(f"| `{module}` | {killed} | {total} | {killed / total:.0%} |")
    killed, total = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print(f"| all | {killed} | {total} | {killed / total:.0%} |")
    print(f"\n{len(survivors)} surviving mutants (`mutmut show <name>`):")
    print("\n".join(f"  {name}" for name in survivors))
    return 0


if __name__ == "__main__":
    sys.exit(main())
