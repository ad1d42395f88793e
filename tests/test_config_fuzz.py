"""Property test: 1,000 mutations of a valid config never produce a traceback, only ConfigError."""

from __future__ import annotations

import copy
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.config_loader import ConfigError, parse_config
from tests.test_config import VALID

BASE = yaml.safe_load(VALID + "  barriers:\n    - {name: b, pulse_relay: 5, safety_loop: 13}\n"
                      "  indicators:\n    - {name: g, kind: led, pin: 16}\n")

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=True),
                    st.text(max_size=12), st.binary(max_size=4).map(lambda b: b.hex()))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=6)


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            out += paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += paths(value, (*prefix, index))
    return out


ALL_PATHS = paths(BASE)


def mutate(data: dict, path: tuple, action: str, value: Any, key: str) -> Any:
    data = copy.deepcopy(data)
    if not path:
        return value if action == "replace" else data
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    last = path[-1]
    if action == "replace":
        parent[last] = value
    elif action == "delete":
        del parent[last]
    elif action == "add" and isinstance(parent[last], dict):
        parent[last][key] = value
    elif action == "duplicate" and isinstance(parent[last], list):
        parent[last].append(copy.deepcopy(parent[last][0]) if parent[last] else value)
    return data


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(ALL_PATHS), st.sampled_from(["replace", "delete", "add", "duplicate"]), values,
       st.text(min_size=1, max_size=8), st.booleans())
def test_mutated_config_gives_config_error_or_valid(path: tuple, action: str, value: Any, key: str,
                                                      as_text_noise: bool) -> None:
    data = mutate(BASE, path, action, value, key)
    text = yaml.safe_dump(data, allow_unicode=True)
    if as_text_noise:
        cut = len(text) * 2 // 3
        text = text[:cut] + key + text[cut:]  # also break the YAML itself
    try:
        parse_config(text, "fuzz.yaml")
    except ConfigError as exc:
        assert exc.problems and all(str(p) for p in exc.problems)


# YAML pieces that break parsers: anchors, aliases, merge keys, tags, deep flow nesting, long runs,
# control characters, and the pieces of a valid config.  Spliced at random into the valid text.
HOSTILE = st.sampled_from([
    "&a ", "*a", "<<: *a\n", "[", "]", "{", "}", ": ", "- ", "\n  ", "? ", "!!python/object:os.system ", "!!binary ",
    "!!float ", "!!int ", ".inf", ".nan", "true", "17.0", "0x11", "0o21", "1e999", "2024-13-45", "~", "'", '"',
    "\t", "\x00", "\x07", "\ufeff", "%YAML 1.1\n", "---\n", "...\n", "#", "|\n", ">-\n", "[" * 60, "{a: " * 30,
    "a" * 200, "/" + "b" * 300, "é" * 50,
])


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 10_000), HOSTILE), min_size=1, max_size=6))
def test_hostile_yaml_spliced_into_a_config_gives_config_error_or_valid(splices: list[tuple[int, str]]) -> None:
    text = yaml.safe_dump(BASE, allow_unicode=True)
    for position, piece in splices:
        cut = position % (len(text) + 1)
        text = text[:cut] + piece + text[cut:]
    try:
        parse_config(text, "fuzz.yaml")
    except ConfigError as exc:
        assert exc.problems and all(str(p) for p in exc.problems)
