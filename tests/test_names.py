"""Derived names stay short (Windows' 260-character paths), stable and distinct."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stationflow.engine.names import HASH_CHARS, short_name


def test_a_name_that_fits_is_kept_as_it_is() -> None:
    assert short_name("UUT-0001.json", 80) == "UUT-0001.json"
    assert short_name("x" * 80, 80) == "x" * 80


def test_a_long_name_keeps_its_start_and_extension_and_gets_a_hash() -> None:
    name = "TestStand_Report_" + "A" * 200 + "_2026-11-30T12-00-00.xml"
    short = short_name(name, 60)
    assert len(short) == 60
    assert short.startswith("TestStand_Report_AAA") and short.endswith(".xml")
    assert "~" in short and len(short.split("~")[1]) == HASH_CHARS + len(".xml")
    assert short_name(name, 60) == short  # the same name always gives the same short one


def test_long_names_with_the_same_start_stay_distinct() -> None:
    a = "S" * 100 + "-unit-1.csv"
    b = "S" * 100 + "-unit-2.csv"
    assert short_name(a, 40) != short_name(b, 40)


def test_the_short_name_can_be_created_on_disk(tmp_path: Path) -> None:
    name = "résultat " * 40 + ".json"
    short = short_name(name, 50)
    (tmp_path / short).write_text("{}")
    assert (tmp_path / short).read_text() == "{}"
    assert not short.endswith((" ", "."))


def test_a_limit_too_small_for_the_hash_is_refused() -> None:
    with pytest.raises(ValueError, match="at least"):
        short_name("anything-long-enough-to-shorten", 5)


@given(st.text(min_size=0, max_size=400), st.integers(min_value=HASH_CHARS + 2, max_value=255))
def test_never_longer_than_the_limit_and_unchanged_when_it_fits(name: str, limit: int) -> None:
    short = short_name(name, limit)
    assert len(short) <= limit
    if len(name) <= limit:
        assert short == name
    else:
        assert short != name
