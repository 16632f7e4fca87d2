"""Saving a config never loses anything: comments, number types, edits made on disk, the token's privacy.

``stationflow config set`` is run as a person runs it (a subprocess); the line editor underneath is
checked on the ``config init`` starter, on hand-written files, and with hypothesis on random values.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stationflow.engine.config_file import (
    ConfigChangedOnDisk,
    config_dict,
    load_config,
    parse_config_text,
    read_config_text,
    render_config,
    save_config,
    starter_config_text,
    validate_config_data,
)
from stationflow.engine.config_text import NotEditable, edit_config_text
from tests.conftest import ROOT


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stationflow", "-c", str(config), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def _comments(text: str) -> list[str]:
    return [line.split("#", 1)[1] for line in text.splitlines() if "#" in line]


def test_config_set_keeps_the_starters_comments_and_int_types_and_a_private_backup(tmp_path: Path) -> None:
    config = tmp_path / "station.yaml"
    assert _cli(config, "config", "init", "--station-name", "ST-7").returncode == 0
    os.chmod(config, 0o640)
    starter = config.read_text()
    done = _cli(config, "config", "set", "server.url=https://wats.example.com", "upload.concurrency=3",
                "server.timeout_s=45", "server.token=c2VjcmV0", "station.location=Line 2")
    assert done.returncode == 0, done.stderr
    assert "upload.concurrency: 4 → 3" in done.stdout and "server.token: (not set) → ********" in done.stdout
    assert "c2VjcmV0" not in done.stdout + done.stderr
    text = config.read_text()
    filled = ("# location:", "# token:", "# timeout_s:")  # commented-out keys that became value lines
    kept = [line[line.index("#"):] for line in starter.splitlines() if "#" in line and not line.strip().startswith(filled)]
    assert all(comment in text for comment in kept)  # every other comment is still there
    assert "# as issued by the WATS server (already base64)" in text  # the placeholder's own note too
    lines = text.splitlines()
    assert "  concurrency: 3               # reports sent at the same time (1..64)" in lines
    assert any(line.startswith("  timeout_s: 45 ") for line in lines)  # not 45.0
    assert any(line.startswith("  token: c2VjcmV0 ") for line in lines)  # the placeholder became the value
    assert "  location: Line 2" in lines
    assert "  rate_per_s: 100              # most reports per second; null = unlimited" in lines  # untouched
    cfg = load_config(config)
    assert cfg.server.url == "https://wats.example.com" and cfg.upload.concurrency == 3
    backup = config.with_name("station.yaml.bak")
    assert backup.read_text() == starter
    assert stat.S_IMODE(backup.stat().st_mode) == 0o640 and stat.S_IMODE(config.stat().st_mode) == 0o640


def test_a_bad_value_changes_nothing_and_names_the_field(tmp_path: Path) -> None:
    config = tmp_path / "station.yaml"
    assert _cli(config, "config", "init").returncode == 0
    before = config.read_bytes()
    done = _cli(config, "config", "set", "upload.concurrency=x", "upload.concurency=3")
    assert done.returncode == 3
    assert "upload.concurrency: 'x' is not allowed — must be a whole number" in done.stderr
    assert "did you mean 'concurrency'?" in done.stderr
    assert config.read_bytes() == before and not config.with_name("station.yaml.bak").exists()


def test_text_values_and_list_items_can_be_set(tmp_path: Path) -> None:
    config = tmp_path / "station.yaml"
    config.write_text("station:\n  name: A\nserver:\n  url: http://h:1\nintake:\n  - name: ict\n    watch: ./in\n"
                      "    converter: wsjf   # the WATS format\n", encoding="utf-8")
    done = _cli(config, "config", "set", "station.name=123", "intake[0].watch=./drop", "intake[0].patterns=[a, b]")
    assert done.returncode == 0, done.stderr
    cfg = load_config(config)
    assert cfg.station.name == "123" and cfg.intake[0].watch == "./drop" and cfg.intake[0].patterns == ["a", "b"]
    assert _cli(config, "config", "set", "intake[3].watch=x").returncode != 0


def test_a_file_changed_on_disk_after_loading_is_not_overwritten(tmp_path: Path) -> None:
    config = tmp_path / "station.yaml"
    config.write_text(starter_config_text("A"), encoding="utf-8")
    loaded = read_config_text(config)
    cfg = load_config(config)
    by_hand = loaded.replace("  # purpose: Production", "  purpose: Production")  # type: ignore[union-attr]
    config.write_text(by_hand, encoding="utf-8")
    mine = validate_config_data({**config_dict(cfg, reveal_secrets=True), "station": {"name": "A", "location": "L2"}})
    with pytest.raises(ConfigChangedOnDisk) as caught:
        save_config(mine, config, expected=loaded)
    assert caught.value.current == by_hand and config.read_text() == by_hand
    save_config(mine, config, expected=by_hand)  # merged by the caller: now it is written
    assert load_config(config).station.location == "L2"


def test_a_hand_written_flow_style_file_falls_back_to_the_commented_format(tmp_path: Path) -> None:
    text = "station: {name: A}\nserver: {url: 'http://h:1', timeout_s: 30}\nupload: {concurrency: 2}\n"
    cfg = validate_config_data(parse_config_text(text))
    data = config_dict(cfg, reveal_secrets=True)
    data["upload"]["concurrency"] = 5
    out = render_config(validate_config_data(data), text)
    assert out.startswith("# stationflow station config — written by `stationflow config init`.")
    again = validate_config_data(parse_config_text(out))
    assert again.upload.concurrency == 5 and again.server.url == "http://h:1" and again.server.timeout_s == 30
    assert "timeout_s: 30 " in out


def test_the_editor_refuses_what_it_does_not_understand() -> None:
    with pytest.raises(NotEditable):
        edit_config_text("server: &s\n  url: x\n", {"server": {"url": "x"}}, {"server": {"url": "y"}})
    with pytest.raises(NotEditable):
        edit_config_text("upload: {concurrency: 2}\n", {"upload": {"concurrency": 2}}, {"upload": {"concurrency": 3}})


_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(location=st.one_of(st.none(), _TEXT.filter(str.strip)), concurrency=st.integers(1, 64),
       rate=st.one_of(st.none(), st.floats(0.5, 1000, allow_nan=False)), timeout=st.integers(1, 600),
       jitter=st.floats(0, 1, allow_nan=False), url=st.sampled_from(["http://a:1", "https://wats.example.com:8443/w"]))
def test_any_values_written_into_the_starter_load_back_exactly(location: str | None, concurrency: int,
                                                               rate: float | None, timeout: int, jitter: float,
                                                               url: str) -> None:
    starter = starter_config_text("ST")
    data = config_dict(validate_config_data(parse_config_text(starter)), reveal_secrets=True)
    data["station"]["location"] = location
    data["upload"].update(concurrency=concurrency, rate_per_s=rate)
    data["upload"]["retry"]["jitter"] = jitter
    data["server"].update(url=url, timeout_s=timeout)
    cfg = validate_config_data(data)
    out = render_config(cfg, starter)
    assert config_dict(validate_config_data(parse_config_text(out)), reveal_secrets=True) == \
        config_dict(cfg, reveal_secrets=True)
    assert _comments(out)[:4] == _comments(starter)[:4]  # edited in place, not the fallback dump
    assert f"  timeout_s: {timeout} " in out or timeout == 30


def test_an_emptied_value_is_said_in_words(tmp_path: Path) -> None:
    config = tmp_path / "station.yaml"
    assert _cli(config, "config", "init").returncode == 0
    done = _cli(config, "config", "set", "station.name=", "server.url=")
    assert done.returncode == 3
    assert "station.name: an empty value is not allowed — enter one" in done.stderr
    assert "server.url: an empty value is not allowed — must be an http:// or https:// address" in done.stderr
    assert "''" not in done.stderr
