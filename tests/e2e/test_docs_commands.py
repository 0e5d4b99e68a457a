"""Every shell block of README.md and docs/ is run by a test, or says why it cannot run here.

A fenced block whose info string is bash, console, sh or shell needs an HTML comment on the line
before it (markdown-it-py's token stream reads both):

    <!-- run -->              run here, in a throwaway copy of the repository (small profile)
    <!-- run: pipeline -->    the same, after `dvc repro evaluate` has run in the copy
    <!-- skip: <why> -->      not run; why (a GPU, a cloud bucket, a long-running server, ...)

Each run block gets its own copy. A bash/sh/shell block runs as one script under
`set -euo pipefail`. A console block runs each `$ ` command and checks that the output lines it
shows appear in that order in what the command printed (spaces compared loosely; `...` stands
for any lines); a command shown without output must exit 0.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

try:  # the shared test helpers (a throwaway copy of the repository)
    from helpers.workspace import clone_copy, dvc, env, run
except ImportError:
    from workspace import clone_copy, dvc, env, run

REPO = next(p for p in Path(__file__).resolve().parents if (p / "mkdocs.yml").is_file())
SHELL_INFO = {"bash", "console", "sh", "shell"}
MARKER = re.compile(r"<!--\s*(?:(run)(?:\s*:\s*([\w-]+))?|skip\s*:\s*(.*?))\s*-->", re.DOTALL)
WHERE = {None: "fresh", "pipeline": "pipeline"}  # run markers and the workspace each needs
BLOCK_TIMEOUT_S = 900


@dataclass(frozen=True)
class Block:
    source: str  # the markdown file, relative to the repository
    line: int  # 1-based line of the opening fence
    info: str  # bash, console, sh or shell
    text: str
    marker: str | None  # "run", "skip" or None
    where: str | None = None  # for "run": "fresh" or "pipeline"
    reason: str = ""  # for "skip"

    @property
    def id(self) -> str:
        return f"{self.source}:{self.line}"


def shell_blocks(markdown: str, source: str = "<string>") -> list[Block]:
    """The shell blocks of `markdown`, each with the marker of the HTML comment right before it
    (None when there is none, or the comment is not a marker)."""
    tokens = MarkdownIt("commonmark").parse(markdown)
    blocks = []
    for i, token in enumerate(tokens):
        info = token.info.split()[0] if token.type == "fence" and token.info.strip() else ""
        if info not in SHELL_INFO:
            continue
        line = token.map[0] + 1 if token.map else 0
        before = tokens[i - 1] if i else None
        found = None
        if before is not None and before.type == "html_block":
            found = MARKER.fullmatch(before.content.strip())
        if found is None:
            blocks.append(Block(source, line, info, token.content, None))
        elif found.group(1):
            where = WHERE.get(found.group(2), f"unknown ({found.group(2)})")
            blocks.append(Block(source, line, info, token.content, "run", where=where))
        else:
            blocks.append(Block(source, line, info, token.content, "skip", reason=found.group(3)))
    return blocks


def unaccounted(blocks: list[Block]) -> list[str]:
    """The blocks that are neither run nor say why not, or whose marker is malformed."""
    problems = []
    for block in blocks:
        if block.marker is None:
            problems.append(f"{block.id}: neither <!-- run --> nor <!-- skip: why -->")
        elif block.marker == "skip" and not block.reason.strip():
            problems.append(f"{block.id}: <!-- skip: --> without a reason")
        elif block.marker == "run" and block.where not in WHERE.values():
            problems.append(f"{block.id}: run in an {block.where} workspace")
    return problems


def documented_blocks() -> list[Block]:
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    return [
        block
        for page in pages
        for block in shell_blocks(page.read_text(), page.relative_to(REPO).as_posix())
    ]


BLOCKS = documented_blocks()


def test_every_shell_block_is_run_or_says_why_not():
    assert BLOCKS, "no shell blocks found: is the markdown parsed?"
    problems = unaccounted(BLOCKS)
    assert not problems, "shell blocks in README.md and docs/:\n" + "\n".join(problems)


def test_the_checker_reports_a_block_without_a_marker():
    markdown = """# A page

<!-- run -->
```bash
dvc dag
```

<!-- skip: needs a GPU -->
```console
$ nvidia-smi
```

A paragraph, and then a block with no marker:

```sh
dvc push
```

<!-- a comment, but no marker -->
```shell
rm -rf data
```

<!-- skip: -->
```bash
make bench
```

<!-- run: somewhere -->
```bash
true
```

<!-- run -->

A marker with a paragraph between it and its block does not count.

```bash
dvc repro
```

```python
print("not a shell block")
```

- in a list:

  <!-- skip: needs a cloud bucket -->
  ```bash
  dvc push -r team
  ```
"""
    blocks = shell_blocks(markdown, "page.md")
    assert [(b.line, b.info, b.marker) for b in blocks] == [
        (4, "bash", "run"),
        (9, "console", "skip"),
        (15, "sh", None),
        (20, "shell", None),
        (25, "bash", "skip"),
        (30, "bash", "run"),
        (38, "bash", None),
        (49, "bash", "skip"),
    ]
    assert blocks[1].reason == "needs a GPU"
    assert blocks[-1].reason == "needs a cloud bucket"
    assert unaccounted(blocks) == [
        "page.md:15: neither <!-- run --> nor <!-- skip: why -->",
        "page.md:20: neither <!-- run --> nor <!-- skip: why -->",
        "page.md:25: <!-- skip: --> without a reason",
        "page.md:30: run in an unknown (somewhere) workspace",
        "page.md:38: neither <!-- run --> nor <!-- skip: why -->",
    ]


# --- running the blocks ---------------------------------------------------------------------


@dataclass
class Step:
    command: str
    expected: list[str]  # output lines, `...` for any lines


def console_steps(text: str) -> list[Step]:
    """`$ command` lines (a trailing backslash continues one) and the output shown after each."""
    steps: list[Step] = []
    continued = False
    for line in text.splitlines():
        if continued:
            steps[-1].command += "\n" + line
            continued = line.endswith("\\")
        elif line.startswith("$ "):
            steps.append(Step(line[2:], []))
            continued = line.endswith("\\")
        elif steps and line.strip():
            steps[-1].expected.append(line)
    return steps


def _loose(line: str) -> str:
    return " ".join(line.split())


def missing_output(expected: list[str], printed: str) -> list[str]:
    """The expected lines not found, in order, among the printed ones (carriage returns, as a
    progress bar prints them, end a line too)."""
    lines = [_loose(line) for line in re.split(r"[\r\n]+", printed)]
    position, missing = 0, []
    for want in (_loose(line) for line in expected):
        if want == "...":
            continue
        try:
            position = lines.index(want, position) + 1
        except ValueError:
            missing.append(want)
    return missing


def test_console_output_is_matched_in_order_and_loosely():
    steps = console_steps("$ dvc exp run -S a=1 \\\n  -S b=2\nerror: a\n...\nlast line\n$ true\n")
    assert [s.command for s in steps] == ["dvc exp run -S a=1 \\\n  -S b=2", "true"]
    assert steps[0].expected == ["error: a", "...", "last line"]
    printed = "noise\rerror:   a\nmore\n last line \n"
    assert missing_output(steps[0].expected, printed) == []
    assert missing_output(["last line", "error: a"], printed) == ["error: a"]


def _shell(root: Path, script: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "-c", script],
        cwd=root,
        env=env(root),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=BLOCK_TIMEOUT_S,
    )


def run_block(block: Block, root: Path) -> None:
    if block.info != "console":
        done = _shell(root, "set -euo pipefail\n" + block.text)
        assert done.returncode == 0, f"{block.id} exited {done.returncode}:\n{done.stdout[-6000:]}"
        return
    for step in console_steps(block.text):
        done = _shell(root, "set -o pipefail\n" + step.command)
        if not step.expected:
            assert done.returncode == 0, (
                f"{block.id}: `{step.command}` exited {done.returncode}:\n{done.stdout[-6000:]}"
            )
        missing = missing_output(step.expected, done.stdout)
        assert not missing, (
            f"{block.id}: `{step.command}` did not print {missing}; it printed:\n"
            f"{done.stdout[-6000:]}"
        )


def _copy(workspace: Path, into: Path) -> Path:
    return Path(shutil.copytree(workspace, into / "repo", symlinks=True))


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    """A throwaway copy of the repository on the small profile: conf/, code, params.yaml, git."""
    return clone_copy(tmp_path_factory.mktemp("fresh"))


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> Path:
    """The same, after the small profile's data stages and both recipes (trained, evaluated)
    have run and been committed: what `dvc exp run` and `dvc exp show` compare against. Both
    recipes, so that `dvc exp show` names the columns as in a full workspace (a key two metrics
    files share, such as `accuracy`, gets its file as prefix)."""
    root = clone_copy(tmp_path_factory.mktemp("pipeline"))
    dvc(root, "repro", "evaluate")
    run(root, "git", "add", "-A")
    run(root, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline")
    return root


def _params(where: str) -> list:
    """The run blocks for one workspace; a block that runs DVC (stages) is marked slow."""
    return [
        pytest.param(b, id=b.id, marks=[pytest.mark.slow] if "dvc " in b.text else [])
        for b in BLOCKS
        if b.marker == "run" and b.where == where
    ]


@pytest.fixture
def scratch(tmp_path) -> Iterator[Path]:
    """A folder for one block's copy of a workspace, removed afterwards (a copy of the
    pipeline workspace holds a few hundred MB of data, models and caches)."""
    yield tmp_path
    shutil.rmtree(tmp_path, ignore_errors=True)


@pytest.mark.parametrize("block", _params("fresh"))
def test_block_runs_in_a_fresh_copy(block, fresh, scratch):
    run_block(block, _copy(fresh, scratch))


@pytest.mark.slow
@pytest.mark.parametrize("block", _params("pipeline"))
def test_block_runs_after_the_pipeline(block, pipeline, scratch):
    run_block(block, _copy(pipeline, scratch))


COMPARISON = re.compile(r"^\$ (dvc exp show --md .*best_val_acc.*)$", re.M)


def markdown_rows(table: str) -> list[dict[str, str]]:
    """A markdown table (`dvc exp show --md`) as one {column: cell} per row."""
    lines = [line for line in table.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [
        dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=True))
        for line in lines[2:]  # after the header and its |---| line
    ]


@pytest.mark.slow
def test_the_documented_comparison_shows_val_and_test_accuracy_per_experiment(pipeline, scratch):
    (command,) = COMPARISON.findall((REPO / "docs" / "experiments.md").read_text())
    root = _copy(pipeline, scratch)
    dvc(root, "exp", "run", "-S", "recipes.text.optimizer.lr=0.0005", "evaluate@text")
    rows = markdown_rows(_shell(root, command).stdout)
    assert len(rows) >= 3  # the workspace, the committed baseline and the experiment
    (val,) = [c for c in rows[0] if c.endswith("best_val_acc")]  # prefixed or not: see the docs
    for row in rows:
        for column in (val, "metrics/evaluate/text.json:accuracy"):
            assert 0 < float(row[column]) <= 1, (row["Experiment"], column, row)
    assert {row["recipes.text.optimizer.lr"] for row in rows} == {"0.001", "0.0005"}
