"""`dlrepro search promote`: a trial's parameters as a recipe of the pipeline.

A new recipe extends the study's recipe (`defaults: [<recipe>, _self_]`) and sets only the
trial's keys; promoting onto the study's own recipe rewrites that file with the keys set. Either
way the file's header names the study, the trial, its objective value and its DVC experiment,
`conf/config.yaml` lists the recipe, and params.yaml is recomposed (and checked) from conf/.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from dlrepro.errors import ConfigError
from dlrepro.search.space import NAME, Search

DEFAULT_LINE = re.compile(r"^(\s*)- recipe@recipes\.([\w-]+): ([\w-]+)\s*$", re.M)


def recipe_text(search: Search, trial: Any, as_recipe: str, base_text: str) -> str:
    """The new recipe file's text."""
    header = (
        f"# Promoted by `dlrepro search promote {search.name} --trial {trial.number} --as "
        f"{as_recipe}`:\n# study {search.name}, trial {trial.number}, {search.split} "
        f"{search.metric} {trial.value:.6g}; `dvc exp apply {trial.user_attrs.get('exp_name')}` "
        "restores its workspace.\n"
    )
    if as_recipe != search.recipe:
        body: dict[str, Any] = {"defaults": [search.recipe, "_self_"]}
    else:
        body = yaml.safe_load(base_text) or {}
        header += "# The recipe this replaces is in git's history of this file.\n"
    for key, value in search.values(trial.params).items():
        _set(body, key.split("."), value)
    return header + yaml.safe_dump(body, sort_keys=False)


def _set(node: dict[str, Any], parts: list[str], value: Any) -> None:
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = value


def listed(config_text: str, recipe: str) -> str:
    """conf/config.yaml's text with `recipe@recipes.<recipe>: <recipe>` in its defaults."""
    lines = list(DEFAULT_LINE.finditer(config_text))
    if any(m.group(2) == recipe for m in lines):
        return config_text
    if not lines:
        raise ConfigError("conf/config.yaml lists no recipe@recipes.<name> default to add to")
    last = lines[-1]
    entry = f"\n{last.group(1)}- recipe@recipes.{recipe}: {recipe}"
    return config_text[: last.end()] + entry + config_text[last.end() :]


def promote(root: Path, search: Search, trial: Any, as_recipe: str) -> Path:
    """Write conf/recipe/<as_recipe>.yaml, list it in conf/config.yaml, recompose params.yaml."""
    from dlrepro.outputs import _atomic_write

    if not NAME.match(as_recipe) or "-" in as_recipe:
        raise ConfigError(f"--as {as_recipe!r}: a recipe name is a-z, 0-9 and _")
    conf = root / "conf"
    base = conf / "recipe" / f"{search.recipe}.yaml"
    target = conf / "recipe" / f"{as_recipe}.yaml"
    config = conf / "config.yaml"
    old = {path: path.read_text() if path.exists() else None for path in (target, config)}
    text = recipe_text(search, trial, as_recipe, base.read_text())
    _atomic_write(target, lambda tmp: tmp.write_text(text))
    _atomic_write(config, lambda tmp: tmp.write_text(listed(old[config] or "", as_recipe)))
    # `make params`' own command (not imported: it reaches the CLI, which reaches this module)
    done = subprocess.run(
        [sys.executable, "-m", "dlrepro.config.compose"], cwd=root, capture_output=True, text=True
    )
    if done.returncode != 0:
        for path, before in old.items():  # conf/ as it was; params.yaml was never replaced
            if before is None:
                path.unlink(missing_ok=True)
            else:
                path.write_text(before)
        lines = [x for x in done.stderr.splitlines() if x.strip()]
        why = lines[-1].removeprefix("error: ") if lines else "?"
        raise ConfigError(f"the promoted recipe does not compose: {why}")
    return target
