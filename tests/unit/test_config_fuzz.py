"""Property: any single wrong value in params.yaml (a wrong type, or a value outside its range
or choices, for every key the schema checks) is refused by `dlrepro check-config` (what the
check-config stage runs first) with exit status 2, exactly one `error:` line, no traceback, and
no file touched.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import typing
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlrepro.cli import main
from dlrepro.config.load import HYPER_RANGES, flatten
from dlrepro.config.schema import Config

REPO = Path(__file__).resolve().parents[2]
PARAMS = yaml.safe_load((REPO / "params.yaml").read_text())
# Trainer arguments the checks know the choices or ranges of.
TRAINER_KEYS = ("accelerator", "strategy", "precision", "devices", "num_nodes")
# A value of the wrong type for each kind of field, none of which OmegaConf coerces into a valid
# one ("true" would become a bool, "7" an int).
WRONG_TYPE: dict[type, list[Any]] = {
    bool: ["maybe", [1], {"a": 1}],
    int: ["seven", 1.5, [1], {"a": 1}],
    float: ["abc", [0.5], {"a": 1}],
    str: [[1, 2], {"a": 1}],
}


def field_of(key: str) -> dataclasses.Field | None:
    """The schema field a dotted params key sets; None for keys of free-form nodes."""
    node: Any = Config
    parts = key.split(".")
    while parts:
        if not dataclasses.is_dataclass(node):
            return None
        fields = {f.name: f for f in dataclasses.fields(node)}
        part = parts.pop(0)
        if part not in fields:
            return None
        if not parts:
            return fields[part]
        hint = typing.get_type_hints(node)[part]
        nested = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
        if typing.get_origin(hint) is dict and nested:  # recipes: name -> RecipeConfig
            parts.pop(0)
        node = hint if dataclasses.is_dataclass(hint) else (nested[0] if nested else None)
    return None


def base_type(value: Any) -> type:
    return bool if isinstance(value, bool) else type(value)


def out_of_range(rules: dict[str, Any], kind: type) -> list[Any]:
    """Values just outside each bound, and a name outside the choices."""
    wrong: list[Any] = []
    step = 1 if kind is int else 0.5
    for name, bound in rules.items():
        if name == "choices":
            wrong.append("nope")
        elif name == "gt":
            wrong += [bound, bound - step]
        elif name == "ge":
            wrong.append(bound - step)
        elif name == "lt":
            wrong += [bound, bound + step]
        elif name == "le":
            wrong.append(bound + step)
    return wrong


def cases() -> list[tuple[str, Any]]:
    """(dotted key, a wrong value) for every checked key of the composed params.yaml."""
    found: list[tuple[str, Any]] = []
    for key, value in flatten(PARAMS).items():
        name = key.rsplit(".", 1)[-1]
        section = key.split(".")
        if section[0] == "trainer" and name in TRAINER_KEYS:
            found += [(key, "nope"), (key, [1, 2, 3] if name != "devices" else 999)]
            continue
        if len(section) > 3 and section[2] in ("optimizer", "scheduler") and name in HYPER_RANGES:
            low, _, high, _ = HYPER_RANGES[name]
            found += [(key, "abc"), (key, (low or 0) - 1)]
            if high is not None:
                found.append((key, high + 1))
            continue
        f = field_of(key)
        if f is None or value is None:
            continue
        kind = base_type(value[0] if isinstance(value, list) and value else value)
        if isinstance(value, list):
            found += [(key, wrong) for wrong in WRONG_TYPE.get(kind, [])[:1]]
            found += [(key, [wrong]) for wrong in out_of_range(dict(f.metadata), kind)]
        else:
            found += [(key, wrong) for wrong in WRONG_TYPE.get(kind, [])]
            found += [(key, wrong) for wrong in out_of_range(dict(f.metadata), kind)]
    # an unknown key at each level
    found += [("data.seeed", 1), ("seeed", 1), ("recipes.tuned.model.dropuot", 0.1)]
    return found


CASES = cases()


def with_value(params: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(params)
    node = changed
    *parents, last = key.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    return changed


def test_the_cases_cover_every_kind_of_key():
    keys = {key for key, _ in CASES}
    for expected in (
        "data.image_size",
        "recipes.tuned.scheduler.max_lr",
        "recipes.tuned.optimizer.weight_decay",
        "recipes.text.model.conv_channels",
        "trainer.precision",
        "curriculum.mlp_xor.lr",
        "export.recipe",
    ):
        assert expected in keys
    assert len(CASES) > 200


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=st.sampled_from(CASES))
def test_every_wrong_value_is_one_line_and_touches_nothing(case, tmp_path):
    key, value = case
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(with_value(PARAMS, key, value)))
    before = sorted(p.name for p in tmp_path.iterdir())
    err, out = io.StringIO(), io.StringIO()
    with redirect_stderr(err), redirect_stdout(out), pytest.raises(SystemExit) as done:
        main(["check-config", str(params)])
    lines = err.getvalue().splitlines()
    assert done.value.code == 2, f"{key}={value!r} was accepted"
    assert len(lines) == 1 and lines[0].startswith("error: "), f"{key}={value!r}: {lines}"
    assert "Traceback" not in err.getvalue()
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_the_composed_params_pass(tmp_path):
    """The positive control: the repository's own params.yaml is accepted."""
    out = io.StringIO()
    with redirect_stdout(out):
        main(["check-config", str(REPO / "params.yaml")])
    assert "recipes:" in out.getvalue()
