"""The documentation: the MkDocs site builds with --strict and loads nothing from another host,
the configuration page lists exactly the schema's keys with their types and ranges, and the
README stays a short guide whose links resolve.

(Every shell block of README.md and docs/ is checked in test_docs_commands.py.)
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import typing
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from dlrepro.config import schema

REPO = next(p for p in Path(__file__).resolve().parents if (p / "mkdocs.yml").is_file())
DOCS = REPO / "docs"
MKDOCS = Path(sys.executable).parent / "mkdocs"
README_MAX_LINES = 250
HEADLINE_HEADER = ["model", "test accuracy (seed 0)", "seeds 0 / 1 / 2, mean ± sd", "parameters"]

# --- the site loads nothing from another host -------------------------------------------------

REMOTE = re.compile(r"^\s*(?:https?:)?//", re.IGNORECASE)
# <link rel=...> kinds that make a browser fetch the target (a canonical or alternate link does not)
FETCHING_RELS = {
    "stylesheet",
    "preload",
    "modulepreload",
    "prefetch",
    "preconnect",
    "dns-prefetch",
    "icon",
    "shortcut",
    "apple-touch-icon",
    "manifest",
    "font",
}
# tag -> the attributes whose URL the browser loads with the page
LOADING_ATTRS = {
    "script": ("src",),
    "img": ("src", "srcset"),
    "source": ("src", "srcset"),
    "iframe": ("src",),
    "embed": ("src",),
    "object": ("data",),
    "audio": ("src",),
    "video": ("src", "poster"),
    "track": ("src",),
    "input": ("src",),
    "image": ("href", "xlink:href"),
    "use": ("href", "xlink:href"),
}
CSS_REMOTE = re.compile(
    r"""@import\s+(?:url\(\s*)?["']?\s*((?:https?:)?//[^"')\s;]+)"""
    r"""|url\(\s*["']?\s*((?:https?:)?//[^"')\s]+)""",
    re.IGNORECASE,
)


def remote_css_urls(css: str) -> list[str]:
    """The remote URLs a stylesheet imports or loads (`@import`, `url(...)`); data: URIs, whose
    SVG carries an `xmlns='http://...'`, are not loads."""
    return [a or b for a, b in CSS_REMOTE.findall(css)]


class _RemoteLoads(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        urls: list[str] = []
        if tag == "link":
            rels = set(values.get("rel", "").lower().split())
            if rels & FETCHING_RELS or values.get("as"):
                urls.append(values.get("href", ""))
        for name in LOADING_ATTRS.get(tag, ()):
            value = values.get(name, "")
            # srcset: "url 1x, url 2x"
            urls += [part.split()[0] for part in value.split(",") if part.split()]
        for url in urls:
            if REMOTE.match(url):
                self.found.append(f"<{tag}> {url}")
        for url in remote_css_urls(values.get("style", "")):
            self.found.append(f"<{tag} style> {url}")
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.found += [f"<style> {url}" for url in remote_css_urls(data)]


def remote_loads(html: str) -> list[str]:
    """What a page makes the browser fetch from another host: scripts, stylesheets and other
    fetched `<link>`s, images and media, inline CSS. Links a reader follows (`<a href>`) are not
    loads."""
    parser = _RemoteLoads()
    parser.feed(html)
    parser.close()
    return parser.found


def test_the_remote_checker_reports_loads_and_lets_links_be():
    html = """<html><head>
      <script src="https://cdn.example.org/vega.js"></script>
      <script src="assets/javascripts/bundle.js"></script>
      <link rel="stylesheet" href="https://fonts.googleapis.com/css?family=Roboto">
      <link rel="preconnect" href="https://fonts.gstatic.com">
      <link rel="canonical" href="https://example.org/docs/">
      <style>@import url("//fonts.example.org/x.css"); p { color: red }</style>
      </head><body>
      <a href="https://dvc.org/doc">DVC's documentation</a>
      <img src="//images.example.org/leaf.png"><img src="plots/leaves.png">
      <img srcset="local.png 1x, https://img.example.org/big.png 2x">
      <div style="background: url('https://img.example.org/bg.png')"></div>
      </body></html>"""
    assert remote_loads(html) == [
        "<script> https://cdn.example.org/vega.js",
        "<link> https://fonts.googleapis.com/css?family=Roboto",
        "<link> https://fonts.gstatic.com",
        "<style> //fonts.example.org/x.css",
        "<img> //images.example.org/leaf.png",
        "<img> https://img.example.org/big.png",
        "<div style> https://img.example.org/bg.png",
    ]
    svg = "data:image/svg+xml;charset=utf-8,<svg xmlns='http://www.w3.org/2000/svg'/>"
    css = """@import "https://fonts.example.org/a.css";
      .md-icon { background: url("SVG") }
      @font-face { src: url(https://fonts.example.org/roboto.woff2) format("woff2") }
      .logo { background: url(../images/logo.png) }""".replace("SVG", svg)
    assert remote_css_urls(css) == [
        "https://fonts.example.org/a.css",
        "https://fonts.example.org/roboto.woff2",
    ]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [str(MKDOCS), "build", "--strict", "--config-file", str(REPO / "mkdocs.yml"), "-d", out],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    return out


def test_every_page_is_built_strictly(site):
    pages = sorted(p.relative_to(DOCS).with_suffix("") for p in DOCS.rglob("*.md"))
    for page in pages:
        built = site / ("index.html" if page.name == "index" else f"{page}/index.html")
        assert built.is_file(), f"docs/{page}.md was not built into {built}"


def test_no_page_loads_anything_from_another_host(site):
    found = {}
    for path in sorted(site.rglob("*")):
        if path.suffix == ".html":
            hits = remote_loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".css":
            hits = remote_css_urls(path.read_text(encoding="utf-8"))
        else:
            continue
        if hits:
            found[path.relative_to(site).as_posix()] = hits
    assert not found, f"pages that load from another host (the site must work offline): {found}"


# --- the configuration page and the schema ----------------------------------------------------

CONFIG_PAGE = DOCS / "configuration.md"
KEY_TABLE_HEADER = ["key", "type", "allowed", "meaning"]


def _number(value: object) -> str:
    return "null" if value is None else str(value)


def type_cell(annotation: str, resolved: object) -> str:
    """The type column: the schema's annotation, with `X | None` as `X or null` and a nested
    dataclass as `group`."""
    if any(dataclasses.is_dataclass(arg) for arg in typing.get_args(resolved)):
        return "group or null"
    return annotation.replace(" | None", " or null")


def allowed_cell(annotation: str, rules: typing.Mapping[str, object]) -> str:
    """The allowed column, from a field's `rule(...)` metadata: bounds, then choices."""
    parts = [
        f"{symbol} {_number(rules[name])}"
        for name, symbol in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"))
        if name in rules
    ]
    if "choices" in rules:
        names = typing.cast(tuple, rules["choices"])
        parts.append("one of " + ", ".join(f"`{_number(c)}`" for c in names))
    if not parts:
        return "any"
    text = ", ".join(parts)
    return f"each {text}" if annotation.startswith("list[") else text


def schema_rows(cls: type = schema.Config, prefix: str = "") -> dict[str, tuple[str, str]]:
    """Every key of params.yaml the schema defines -> (type, allowed); a nested dataclass is
    walked into, a mapping of dataclasses (`recipes`) as `<name>`."""
    rows: dict[str, tuple[str, str]] = {}
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        resolved, key = hints[field.name], f"{prefix}{field.name}"
        args = typing.get_args(resolved)
        if dataclasses.is_dataclass(resolved):
            rows |= schema_rows(resolved, f"{key}.")
            continue
        if typing.get_origin(resolved) is dict and args and dataclasses.is_dataclass(args[1]):
            rows |= schema_rows(args[1], f"{key}.<name>.")
            continue
        annotation = str(field.type)
        rows[key] = (type_cell(annotation, resolved), allowed_cell(annotation, field.metadata))
        for arg in args:  # an optional group (`augment`): its own keys too
            if dataclasses.is_dataclass(arg):
                rows |= schema_rows(arg, f"{key}.")
    return rows


ANY = "*"  # in a header given to table_rows: any cell


def table_rows(markdown: str, header: list[str]) -> list[list[str]]:
    """The body rows (cells as markdown source) of every table whose header is `header` (a cell
    ANY matches any header cell)."""
    tokens = MarkdownIt("commonmark").enable("table").parse(markdown)
    rows: list[list[str]] = []
    table_header: list[str] = []
    row: list[str] | None = None  # the cells of the row being read
    in_head = False
    for token in tokens:
        if token.type == "thead_open":
            in_head, table_header = True, []
        elif token.type == "thead_close":
            in_head = False
        elif token.type == "tr_open":
            row = []
        elif token.type == "inline" and row is not None:
            row.append(token.content.strip())
        elif token.type == "tr_close" and row is not None:
            if in_head:
                table_header = row
            elif len(table_header) == len(header) and all(
                want in (ANY, got) for want, got in zip(header, table_header, strict=True)
            ):
                rows.append(row)
            row = None
    return rows


def documented_rows() -> dict[str, tuple[str, str, str]]:
    documented: dict[str, tuple[str, str, str]] = {}
    for key, type_, allowed, meaning in table_rows(CONFIG_PAGE.read_text(), KEY_TABLE_HEADER):
        key = key.strip("`")
        assert key not in documented, f"docs/configuration.md lists {key} twice"
        documented[key] = (type_.strip("`"), allowed, meaning)
    return documented


def _row(key: str, type_: str, allowed: str) -> str:
    return f"| `{key}` | `{type_}` | {allowed} | <meaning> |"


def test_the_configuration_page_lists_every_schema_key_with_its_type_and_range():
    expected, documented = schema_rows(), documented_rows()
    assert len(expected) > 50  # the walk found the schema, not an empty class
    missing = [_row(k, *expected[k]) for k in expected if k not in documented]
    extra = sorted(set(documented) - set(expected))
    wrong = [
        f"{_row(key, *expected[key])}  (the page says: {documented[key][0]!r}, "
        f"{documented[key][1]!r})"
        for key in expected
        if key in documented and documented[key][:2] != expected[key]
    ]
    assert not missing, "docs/configuration.md lacks these schema keys:\n" + "\n".join(missing)
    assert not extra, f"docs/configuration.md lists keys the schema does not have: {extra}"
    assert not wrong, "docs/configuration.md disagrees with the schema:\n" + "\n".join(wrong)
    blank = [key for key, (_, _, meaning) in documented.items() if not meaning]
    assert not blank, f"keys without a meaning in docs/configuration.md: {blank}"


def test_the_configuration_page_names_every_conf_option():
    page = CONFIG_PAGE.read_text()
    options = sorted(path.relative_to(REPO).as_posix() for path in (REPO / "conf").glob("*/*.yaml"))
    assert options
    missing = [option for option in options if f"`{option}`" not in page]
    assert not missing, f"docs/configuration.md does not name these conf/ options: {missing}"


def test_the_schema_walk_renders_types_and_ranges_as_the_page_writes_them():
    rows = schema_rows()
    assert rows["data.raw_size"] == ("int", "≥ 32, ≤ 1024")
    assert rows["data.gates"][1].startswith("each one of `AND`, `OR`")
    assert rows["recipes.<name>.model.global_pool"] == (
        "str or null",
        "one of `avg`, `max`, `avgmax`, `null`",
    )
    assert rows["recipes.<name>.augment"] == ("group or null", "any")
    assert rows["recipes.<name>.augment.crop_scale"] == ("list[float] or null", "each > 0, ≤ 1")
    assert "recipes.<name>.model" not in rows  # a group is walked into, not listed


# --- the case study's figures and the committed metrics -----------------------------------------

RESULTS_HEADER = ["recipe", "accuracy", "precision", "recall", "F1", "ROC AUC"]


def evaluated() -> dict[str, dict]:
    """metrics/evaluate/<recipe>.json: what `make repro` measured on the test split."""
    found = {p.stem: json.loads(p.read_text()) for p in (REPO / "metrics/evaluate").glob("*.json")}
    assert found, "no metrics/evaluate/*.json"
    return found


def test_the_case_study_states_the_committed_test_figures():
    rows = {
        row[0].strip("`"): row
        for row in table_rows((DOCS / "case-study.md").read_text(), [*RESULTS_HEADER, ANY])
    }
    for recipe, found in evaluated().items():
        confusion = ", ".join(" / ".join(str(n) for n in row) for row in found["confusion_matrix"])
        expected = [
            f"`{recipe}`",
            *(f"{found[key]:.3f}" for key in ("accuracy", "precision", "recall", "f1", "roc_auc")),
            confusion,
        ]
        assert rows.get(recipe) == expected, (
            f"docs/case-study.md's results row for {recipe} should read: | {' | '.join(expected)} |"
        )


def test_the_readme_headline_states_the_committed_accuracies():
    rows = {
        row[0].split()[0].strip("`"): row[1].strip("*")
        for row in table_rows((REPO / "README.md").read_text(), HEADLINE_HEADER)
    }
    for recipe, found in evaluated().items():
        assert rows.get(recipe) == f"{found['accuracy']:.3f}", (
            f"README.md's headline table: the {recipe} recipe's test accuracy (seed 0) is "
            f"{found['accuracy']:.3f} in metrics/evaluate/{recipe}.json"
        )


# --- the README -------------------------------------------------------------------------------


def test_the_readme_is_a_short_guide_whose_links_resolve():
    text = (REPO / "README.md").read_text()
    lines = text.count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; keep it a guide (docs/)"
    tokens = MarkdownIt("commonmark").enable("table").parse(text)
    targets = [
        child.attrGet("href")
        for token in tokens
        if token.type == "inline"
        for child in token.children or []
        if child.type == "link_open"
    ]
    local = [str(t) for t in targets if t and not re.match(r"^[a-z]+:", str(t))]
    assert any(t.startswith("docs/") for t in local), "README.md links into docs/"
    broken = [t for t in local if not (REPO / t.split("#")[0]).exists()]
    assert not broken, f"README.md links to files that do not exist: {broken}"
