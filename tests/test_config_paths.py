"""The config's error paths and odd shapes, as a person meets them: ``config validate`` and
``config set`` with files that are folders, not UTF-8, unreadable, nested too deep, or hold
values the schema refuses (exit 3, one line naming the field); warnings a valid config still
earns; and the line editor on hand-written shapes (tabs, document markers, lists outside a key,
duplicate keys, missing sections, continuation lines, values ending in ``...``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from stationflow.engine.cli.main import main
from stationflow.engine.config_file import (
    config_dict,
    config_warnings,
    load_config,
    parse_config_text,
    resolved,
    save_config,
    validate_config_data,
    write_starter,
)
from stationflow.engine.config_text import NotEditable, edit_config_text
from stationflow.engine.errors import ConfigError, StorageError
from stationflow.schemas.config import ByteSize, section_model

MINIMAL = "station:\n  name: S-1\nserver:\n  url: http://127.0.0.1:8080\n"


def _validate(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["config", "validate", str(config)])
    captured = capsys.readouterr()
    return code, captured.err


def _problems(text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> list[str]:
    config = tmp_path / "station.yaml"
    config.write_text(text, encoding="utf-8")
    code, err = _validate(config, capsys)
    assert code == 3, err
    return [line[4:] for line in err.splitlines() if line.startswith("  - ")]


# ------------------------------------------------------------------------- the file itself

def test_a_folder_given_as_the_config_is_named_as_a_folder(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _validate(tmp_path, capsys)
    assert code == 3
    assert f"stationflow: error: {tmp_path} is a folder, not a config file — pass the YAML file with -c PATH" in err


def test_a_config_that_is_not_utf8_says_which_byte(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "station.yaml"
    data = b"station:\n  name: Pr\xfcfplatz\n"  # Latin-1, as an old editor saves it
    config.write_bytes(data)
    code, err = _validate(config, capsys)
    assert code == 3
    at = data.index(b"\xfc")
    assert f"{config}: not a UTF-8 text file (byte {at}) — save the file as UTF-8" in err


def test_a_config_that_cannot_be_read_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    code, err = _validate(blocker / "station.yaml", capsys)  # a path through a file: ENOTDIR
    assert code == 3
    assert f"cannot read {blocker / 'station.yaml'}: Not a directory — check the file's permissions" in err


def test_a_config_nested_deeper_than_any_real_one_is_refused_by_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deep = "extra:\n" + "".join(f"{'  ' * (i + 1)}k{i}:\n" for i in range(70)) + "  " * 71 + "leaf: 1\n"
    config = tmp_path / "station.yaml"
    config.write_text(MINIMAL + deep)
    code, err = _validate(config, capsys)
    assert code == 3
    # level 1 is the top mapping, level 2 opens under extra: on line 6, ..., level 65 on line 69
    assert f"{config}: line 69: nested more than 64 levels deep" in err and "config init" in err


def test_a_config_with_too_many_nodes_is_refused() -> None:
    from stationflow.engine.yaml_limits import YamlBounds, YamlTooComplex, check_yaml_limits

    with pytest.raises(YamlTooComplex, match="more than 50 YAML nodes") as info:
        check_yaml_limits("items: [" + ", ".join(str(i) for i in range(100)) + "]\n", YamlBounds(max_nodes=50))
    assert info.value.bound == "nodes" and info.value.line == 1


def test_an_unhashable_key_is_a_syntax_error_with_its_line(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "station.yaml"
    config.write_text(MINIMAL + "? [a, b]\n: 1\n")
    code, err = _validate(config, capsys)
    assert code == 3
    assert "YAML syntax error at line 5" in err and "unhashable" in err


# ---------------------------------------------------------------------- values refused

def test_each_kind_of_refused_value_is_said_in_words(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = ("station:\n  name: " + "N" * 101 + "\n"
            "server:\n  url: http://wats:99999\n  token: '   '\n"
            "intake:\n  - {name: a, watch: ./in, patterns: [], converter: ':Broken'}\n"
            "  - {name: b, watch: ./in, converter: 'plugin:1bad', max_file_bytes: true}\n"
            "  - {name: 'c d', watch: ./in, converter: wsjf}\n"
            "control:\n  submit_folders: [" + ", ".join(f"./s{i}" for i in range(101)) + "]\n")
    problems = _problems(text, tmp_path, capsys)
    assert "station.name: '" + "N" * 56 + "... is not allowed — must have at most 100 characters" in problems
    assert any(p.startswith("server.url: 'http://wats:99999' is not allowed — must be an http:// or https:// "
                            "address with a valid port") for p in problems)
    assert any(p.startswith("server.token: '********' is not allowed — must not be empty") for p in problems)
    assert "intake[0].patterns: [] is not allowed — must not be empty" in problems
    assert any(p.startswith("intake[0].converter: ':Broken' is not allowed — a custom converter is") for p in problems)
    assert any(p.startswith("intake[1].converter: 'plugin:1bad'") for p in problems)
    assert any(p.startswith("intake[1].max_file_bytes: true is not allowed") for p in problems)
    assert any(p.startswith("intake[2].name: 'c d' is not allowed — may contain only letters") for p in problems)
    # a kind without words of its own: pydantic's message, lower-cased
    assert any(p.startswith("control.submit_folders: [") and p.endswith(
        "is not allowed — list should have at most 100 items after validation, not 101") for p in problems)


def test_a_url_with_a_query_and_a_missing_section_are_explained(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    problems = _problems("station:\n  name: S\nserver:\n  url: http://wats/?x=1\n", tmp_path, capsys)
    assert any("must not have a ?query or #fragment" in p for p in problems)
    problems = _problems("station:\n  name: S\n", tmp_path, capsys)
    assert problems == ["server: missing — required section (the WATS server to upload to); it needs at least: url"]


def test_a_missing_key_without_a_description_still_says_it_is_required() -> None:
    from pydantic import BaseModel, ValidationError

    from stationflow.engine.config_file import describe_errors

    class Bare(BaseModel):
        x: int

    with pytest.raises(ValidationError) as info:
        Bare.model_validate({})
    assert describe_errors(info.value) == ["x: missing — required: add this key"]


def test_section_model_follows_aliases_and_stops_at_unknown_keys() -> None:
    assert section_model(("logging",)) is not None
    assert section_model(("logging", "json")) is None  # a leaf, reached through its alias
    assert section_model(("nowhere",)) is None


def test_byte_sizes_keep_their_form_or_get_the_shortest_exact_one() -> None:
    size = ByteSize.parse("500MB")
    assert ByteSize.parse(size) is size
    assert ByteSize(10 * 1000**3).human() == "10GB"
    assert size.human() == "500MB"


# --------------------------------------------------------------------------- warnings

def test_a_valid_config_still_warns_about_what_will_go_wrong(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "station.yaml"
    config.write_text("station:\n  name: S\nserver:\n  url: https://wats.example.com\n  verify_tls: false\n"
                      "  ca_bundle: ./ca.pem\n  token: dG9r\n"
                      "intake:\n  - {name: ict, watch: ./drop, converter: wsjf}\n")
    assert main(["config", "validate", str(config)]) == 0
    captured = capsys.readouterr()
    assert captured.out == f"OK: {config}\n"
    warnings = captured.err.splitlines()
    assert "warning: server.verify_tls: false — the server's certificate is not checked" in warnings
    assert f"warning: server.ca_bundle: {tmp_path / 'ca.pem'} does not exist" in warnings
    assert f"warning: intake[0].watch: folder {tmp_path / 'drop'} does not exist yet" in warnings
    (tmp_path / "drop").mkdir()
    (tmp_path / "ca.pem").write_text("pem")
    assert [w for w in config_warnings(resolved(load_config(config), config)) if "verify_tls" not in w] == []


# ------------------------------------------------------------------------------ saving

def test_a_starter_in_a_folder_that_cannot_be_made_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StorageError, match="cannot create the folder .*file/etc"):
        write_starter(tmp_path / "file" / "etc" / "station.yaml", station_name="S")


def test_a_config_whose_old_version_cannot_be_read_is_not_saved(tmp_path: Path) -> None:
    cfg = validate_config_data(parse_config_text(MINIMAL))
    (tmp_path / "file").write_text("not a folder")
    target = tmp_path / "file" / "station.yaml"  # reading it fails with ENOTDIR, not "not found"
    with pytest.raises(StorageError, match="cannot read .*station.yaml to keep a backup: Not a directory") as info:
        save_config(cfg, target)
    assert "nothing was changed" in str(info.value)
    assert (tmp_path / "file").read_text() == "not a folder"


def test_config_set_of_a_value_ending_in_dots_keeps_the_files_own_comments(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bug found here: the editor took ``...`` at the end of a value for YAML's document end and cut
    it off, so the edit did not load back and the file was rewritten without its own comments."""
    config = tmp_path / "station.yaml"
    config.write_text("# line 3 tester, owned by the test team\n" + MINIMAL.replace("S-1", "S-1   # the name on the label"))
    assert main(["-c", str(config), "config", "set", "station.location=Hall 3, bay 4..."]) == 0
    text = config.read_text()
    assert text.startswith("# line 3 tester, owned by the test team\n")
    assert "  name: S-1   # the name on the label\n" in text
    assert load_config(config).station.location == "Hall 3, bay 4..."
    assert "station.location: (not set) → Hall 3, bay 4..." in capsys.readouterr().out


def test_config_set_refuses_keys_it_cannot_place(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "station.yaml"
    config.write_text(MINIMAL + "intake:\n  - {name: a, watch: ./in, converter: wsjf}\n")
    before = config.read_text()
    cases = {
        "intake[3].after=delete": "intake[3].after: there is no item 3 (the list has 1)",
        "intake[0]=x": "intake[0]: 'x' is not allowed — must be a mapping",
        "station.name.first=A": "station.name: {\"first\": \"A\"} is not allowed",
        "intake.x[0]=1": "intake.x[0]: x is not inside a section",
        "intake.x=1": "intake.x: x is not inside a section",
        "data_dir[0]=x": "data_dir[0]: there is no item 0",
        "server..url=x": "'server..url' is not a config key",
        "noequals": "'noequals' is not KEY=VALUE",
    }
    for assignment, message in cases.items():
        code = main(["-c", str(config), "config", "set", assignment])
        err = capsys.readouterr().err
        assert code in (3, 4), (assignment, err)
        assert message in err, (assignment, err)
    assert config.read_text() == before  # nothing was saved


def test_config_set_takes_text_that_is_not_yaml_as_written(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "station.yaml"
    config.write_text(MINIMAL)
    config.write_text(MINIMAL + "intake:\n  - {name: a, watch: ./in, converter: wsjf}\n")
    assert main(["-c", str(config), "config", "set", "station.purpose=[unclosed", "station.name=0123",
                 "intake[0].arguments.speed=3"]) == 0
    cfg = load_config(config)
    assert cfg.station.purpose == "[unclosed" and cfg.station.name == "0123"  # not YAML 0123 = 83
    assert cfg.intake[0].arguments == {"speed": 3}
    out = capsys.readouterr().out
    assert "station.name: S-1 → 0123" in out and "station.purpose: (not set) → [unclosed" in out
    assert "intake[0].arguments.speed: (not set) → 3" in out


def test_config_set_on_a_missing_file_points_to_init(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "station.yaml"
    assert main(["-c", str(config), "config", "set", "upload.concurrency=2"]) == 3
    assert f"config file not found: {config}" in capsys.readouterr().err
    assert not config.exists()


# ------------------------------------------------------------------- the line editor

def _edit(text: str, change: dict[str, Any]) -> str:
    old = yaml.safe_load(text)
    new = yaml.safe_load(text)
    for dotted, value in change.items():
        node = new
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    out = edit_config_text(text, old, new)
    assert yaml.safe_load(out) == new  # what the editor writes loads back as asked
    return out


@pytest.mark.parametrize("text, refusal", [
    ("station:\n  \tname: S\n", "line 2 is not a `key: value` line"),
    ("---\nstation:\n  name: S\n", "line 1: document markers and flow collections are not edited"),
    ("- a\nstation:\n  name: S\n", "line 1: a list item outside a key"),
    ("station:\n  just text\n  name: S\n", "line 2 is not a `key: value` line"),
    ("station:\n  name: S\nnot a key line\n", "line 3 is not a `key: value` line"),
    ("station:\n  name: S\n  name: T\n", "line 3: station.name is written twice"),
    ("station:\n  name: |\n    S\n", "line 2: block scalars, anchors and tags are not edited"),
])
def test_the_editor_refuses_shapes_it_does_not_understand(text: str, refusal: str) -> None:
    with pytest.raises(NotEditable, match=refusal.replace("(", r"\(").replace("`", ".")):
        edit_config_text(text, {"station": {"name": "S"}}, {"station": {"name": "X"}})


def test_a_plain_value_continued_on_the_next_line_is_part_of_its_block() -> None:
    text = "station:\n  name: S\n  purpose: testing of\n    boards\nserver:\n  url: http://a\n"
    out = _edit(text, {"server.url": "http://b"})
    assert out == text.replace("http://a", "http://b")


def test_a_missing_section_is_written_whole_and_a_new_top_level_key_at_the_end() -> None:
    text = "station:\n  name: S   # kept\n\n\n"
    out = _edit(text, {"upload.retry.initial_s": 2, "data_dir": "/var/lib/sf"})
    assert out.startswith("station:\n  name: S   # kept\n")
    assert yaml.safe_load(out)["upload"] == {"retry": {"initial_s": 2}}
    assert "data_dir: /var/lib/sf\n" in out


def test_a_section_added_to_an_existing_parent_goes_at_its_end() -> None:
    text = "upload:\n  concurrency: 2\nspool:\n  max_reports: 5\n"
    out = _edit(text, {"upload.retry": {"initial_s": 2, "max_s": 9}})
    assert out.index("retry:") < out.index("spool:")  # inside upload, not at the end of the file


def test_a_value_with_line_breaks_is_not_edited_on_one_line() -> None:
    with pytest.raises(NotEditable, match="spans several lines"):
        edit_config_text("station:\n  name: S\n", {"station": {"name": "S"}}, {"station": {"name": "a\n\nb"}})


def test_render_refuses_a_config_that_would_not_load_back(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from stationflow.engine import config_file

    cfg = validate_config_data(parse_config_text(MINIMAL))
    monkeypatch.setattr(config_file, "dump_for_file", lambda cfg: "station: [\n")  # every candidate broken
    with pytest.raises(ConfigError, match="could not be written in a form that loads back the same"):
        save_config(cfg, tmp_path / "new.yaml")
    assert not (tmp_path / "new.yaml").exists()
    assert config_dict(cfg)["station"]["name"] == "S-1"


def test_a_control_character_in_the_config_is_one_line_naming_it(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "station.yaml"
    config.write_text("station:\n  name: LINE\x077\n")  # a BEL pasted from a terminal
    code, err = _validate(config, capsys)
    assert code == 3
    assert err.startswith(f"stationflow: error: {config}: not valid YAML: unacceptable character #x0007")
    assert err.count("\n") == 1  # one line, though PyYAML's message has two


def test_a_value_that_contains_itself_is_shown_without_looping(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    problems = _problems("station:\n  name: &n [*n]\nserver:\n  url: http://wats\n", tmp_path, capsys)
    assert problems == ["station.name: [[...]] is not allowed — must be text (put it in quotes)"]
