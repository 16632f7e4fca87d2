"""Editing one intake keeps the person's comments and lines in the intake list (config_text)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from stationflow.engine.config_text import edit_config_text

TEXT = """station:
  name: S1   # the station
intake:
  # the first intake: TestStand
  - name: ts
    watch: /data/ts   # on the share
    patterns: ["*.xml"]
    converter: atml
  # the second: csv
  - name: csv
    watch: /data/csv
    after: archive   # keep them
upload:
  concurrency: 4
"""


def _edit(text: str, change: Any) -> str:
    old = yaml.safe_load(text)
    new = yaml.safe_load(text)
    change(new)
    out = edit_config_text(text, old, new)
    assert yaml.safe_load(out) == new, out
    return out


def test_a_key_set_in_one_intake_keeps_every_comment_and_the_other_intake() -> None:
    out = _edit(TEXT, lambda d: d["intake"][0].update(follow_links="inside"))
    assert out.replace("    follow_links: inside\n", "") == TEXT
    assert out.index("follow_links") < out.index("# the second: csv")  # in the item it belongs to


def test_values_changed_in_place_keep_their_comments_and_the_dash() -> None:
    def change(d: Any) -> None:
        d["intake"][0]["name"] = "teststand"  # the item's first key, on the ``- `` line
        d["intake"][1]["after"] = "delete"
        d["intake"][0]["watch"] = "/data/ts2"
    out = _edit(TEXT, change)
    assert "  - name: teststand\n" in out
    assert re.search(r"\n    watch: /data/ts2 +# on the share\n", out)  # the comment at its column, or 2 after
    assert "    after: delete    # keep them\n" in out
    assert "# the first intake: TestStand" in out and "# the second: csv" in out
    assert 'patterns: ["*.xml"]' in out  # untouched lines stay as written


def test_a_removed_key_goes_alone_and_a_removed_first_key_rewrites_the_list() -> None:
    out = _edit(TEXT, lambda d: d["intake"][1].pop("after"))
    assert out == TEXT.replace("    after: archive   # keep them\n", "")
    out = _edit(TEXT, lambda d: d["intake"][0].pop("name"))  # the ``- `` line's key: the list is written whole
    assert "station:\n  name: S1   # the station\n" in out


def test_a_list_that_grew_is_written_whole_and_the_rest_of_the_file_kept() -> None:
    out = _edit(TEXT, lambda d: d["intake"].append({"name": "x", "watch": "/x"}))
    assert out.startswith("station:\n  name: S1   # the station\n") and out.endswith("upload:\n  concurrency: 4\n")


@pytest.mark.parametrize("text", [
    "intake:\n- name: a   # first\n  watch: /a\n- name: b\n  watch: /b\nupload:\n  concurrency: 4\n",
    "intake:\n  -   name: a   # first\n      watch: /a\n  -   name: b\n      watch: /b\n",
])
def test_other_indents_of_a_list_of_mappings(text: str) -> None:
    out = _edit(text, lambda d: (d["intake"][1].update(watch="/b2"), d["intake"][0].update(settle_ms=5)))
    assert "# first" in out and "/b2" in out
    assert len(out.splitlines()) == len(text.splitlines()) + 1  # one line added, none rewritten


def test_an_item_not_written_as_key_lines_is_written_whole() -> None:
    text = "intake:\n  -\n    name: a\n    watch: /a\n"
    out = _edit(text, lambda d: d["intake"][0].update(watch="/b"))
    assert yaml.safe_load(out)["intake"] == [{"name": "a", "watch": "/b"}]
