"""One YAML-bounds implementation (engine/yaml_limits.py) serves the config and the lifecycles,
each with its own limits and its own words."""

from __future__ import annotations

import time

import pytest

from stationflow.engine.config_file import parse_config_text
from stationflow.engine.errors import ConfigError, MachineDefinitionError
from stationflow.engine.lifecycle import MAX_DEPTH, MAX_NODES, load_definition
from stationflow.engine.yaml_limits import YamlBounds, YamlTooComplex, check_yaml_limits


def _block(depth: int) -> str:
    return "".join(f"{'  ' * i}k{i}:\n" for i in range(depth)) + f"{'  ' * depth}v: 1\n"


def test_each_caller_keeps_its_limits() -> None:
    """Aliases: a config may use a few, a lifecycle none; depth: 20 is fine for a config, not a lifecycle."""
    aliased = "a: &x [1]\nb: *x\n"
    assert parse_config_text(aliased) == {"a": [1], "b": [1]}
    with pytest.raises(MachineDefinitionError) as info:
        load_definition("site.yaml", text=aliased)
    assert info.value.problems == ["site.yaml:1: anchors and aliases (&name / *name) are not allowed in lifecycle "
                                   "YAML — write each state and transition out in full"]

    deep = _block(MAX_DEPTH + 4)
    assert parse_config_text(deep)
    with pytest.raises(MachineDefinitionError) as info:
        load_definition("site.yaml", text=deep)
    (problem,) = info.value.problems
    assert problem.startswith(f"site.yaml:{MAX_DEPTH + 1}: nested more than {MAX_DEPTH} levels deep")

    with pytest.raises(ConfigError, match="levels deep"):
        parse_config_text(_block(70))


def test_the_bound_and_its_line_are_reported_to_the_caller() -> None:
    text = "a: 1\nb:\n  c: [[[[1]]]]\n"
    with pytest.raises(YamlTooComplex) as info:
        check_yaml_limits(text, YamlBounds(max_depth=3))
    assert (info.value.bound, info.value.line, info.value.limit) == ("depth", 3, 3)
    with pytest.raises(YamlTooComplex) as info:
        check_yaml_limits("x: [" + ",".join(["1"] * 50) + "]\n", YamlBounds(max_nodes=20))
    assert info.value.bound == "nodes" and info.value.line == 1
    with pytest.raises(YamlTooComplex) as info:
        check_yaml_limits("k: " + "v" * 100, YamlBounds(max_bytes=50))
    assert (info.value.bound, info.value.found) == ("bytes", 103)
    check_yaml_limits("a: '[[[[[[' # [[[[[[\nb: \"{{{{{{\"\n", YamlBounds(max_depth=2))  # text, not structure


def test_many_nodes_in_a_lifecycle_are_refused_fast_with_the_lifecycle_words() -> None:
    started = time.perf_counter()
    with pytest.raises(MachineDefinitionError) as info:
        load_definition("big.yaml", text="x: [" + ",".join(["1"] * 20_000) + "]\n")
    assert time.perf_counter() - started < 1.0
    assert info.value.problems == [f"big.yaml:1: more than {MAX_NODES} YAML nodes — a lifecycle is a few "
                                   "hundred; this file is not one"]
