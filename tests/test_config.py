"""The station config: the contract file loads, bad files are refused field by field, secrets stay masked,
saving is atomic with a backup, and `stationflow config ...` behaves as cli.md says."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import subprocess
import sys

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from stationflow.engine.cli.main import main
from stationflow.engine.config_file import (
    ENV_VAR,
    dump_for_file,
    dump_masked,
    find_config_path,
    load_config,
    parse_config_text,
    read_config_data,
    resolved,
    save_config,
    starter_config_text,
    validate_config_data,
)
from stationflow.engine.errors import ConfigError, StorageError
from stationflow.schemas.config import MASK, ByteSize, StationConfig, format_bytes

CONFIGS = Path(__file__).parents[1] / "fixtures" / "configs"
CONTRACT = CONFIGS / "station.yaml"
SHARED_CONTRACT = Path(__file__).parents[2] / "shared" / "contract" / "station.yaml"
TOKEN = "dXNlcjpwYXNz"
MINIMAL = "station: {name: S1}\nserver: {url: 'http://127.0.0.1:8080'}\n"

contract_files = [CONTRACT] + ([SHARED_CONTRACT] if SHARED_CONTRACT.is_file() else [])


def contract_data() -> dict[str, Any]:
    return read_config_data(CONTRACT)


def problems_of(call: Any, *args: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        call(*args)
    assert info.value.exit_code == 3
    return info.value.problems


# ------------------------------------------------------------------ the contract file

@pytest.mark.parametrize("path", contract_files, ids=lambda p: str(p.parent.name))
def test_contract_file_loads_as_it_is(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.station.name == "STATION-01"
    assert cfg.server.url == "http://127.0.0.1:8080"
    assert cfg.server.token is not None and cfg.server.token.get_secret_value() == TOKEN
    assert cfg.server.timeout_s == 30 and cfg.server.verify_tls is True
    assert [i.name for i in cfg.intake] == ["ict-json", "fct-csv"]
    assert cfg.intake[0].patterns == ["*.json"] and cfg.intake[0].settle_ms == 300
    assert cfg.intake[1].after == "move" and cfg.intake[1].move_to == "./done/csv"
    assert cfg.intake[1].settle_ms == 1000  # default
    assert cfg.spool.max_bytes == 10 * 10**9 and cfg.spool.min_free_disk == 500 * 10**6
    assert cfg.upload.retry.multiplier == 2.0 and cfg.control.port == 0 and cfg.logging.level == "INFO"


def test_minimal_file_takes_defaults_and_empty_sections_mean_defaults() -> None:
    cfg = validate_config_data(parse_config_text(MINIMAL + "upload:\nlogging:\nintake:\n"))
    assert cfg.data_dir == "./stationflow-data" and cfg.intake == []
    assert cfg.upload.concurrency == 4 and cfg.upload.rate_per_s == 100
    assert cfg.spool.max_bytes == 10 * 10**9 and cfg.logging.file_max_bytes == 10 * 10**6
    assert cfg.server.token is None


def test_rate_null_means_unlimited() -> None:
    cfg = validate_config_data(parse_config_text(MINIMAL + "upload: {rate_per_s: null}\n"))
    assert cfg.upload.rate_per_s is None


# ------------------------------------------------------------------ bad files, one line per field

BAD = {
    "bad_type.yaml": ("upload.concurrency: 'four' is not allowed", "whole number"),
    "unknown_key.yaml": ("upload.concurency: unknown key", "allowed keys here: concurrency, rate_per_s, retry"),
    "out_of_range.yaml": ("server.timeout_s: -1 is not allowed", "must be greater than 0"),
    "bad_choice.yaml": ("intake[1].after: 'moov' is not allowed", "one of archive, move, delete, keep"),
    "move_without_target.yaml": ("intake[1].move_to: required when after is 'move'", "folder"),
    "duplicate_intake.yaml": ("intake[1].name: 'ict-json' is not allowed", "intake[0] already has this name"),
    "bad_size.yaml": ("spool.max_bytes: '0' is not allowed", "at least 1 byte"),
    "no_server_url.yaml": ("server.url: missing", "http"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_fixture_names_the_field(name: str) -> None:
    start, detail = BAD[name]
    problems = problems_of(load_config, CONFIGS / name)
    assert len(problems) == 1, problems
    assert problems[0].startswith(start), problems
    assert detail in problems[0]


def test_many_problems_are_reported_together() -> None:
    data = contract_data()
    data["server"]["timeout_s"] = 0
    data["control"]["port"] = 70000
    data["logging"]["level"] = "info"
    data["station"]["nmae"] = "x"
    problems = problems_of(validate_config_data, data)
    assert len(problems) == 4
    joined = "\n".join(problems)
    for expected in ("server.timeout_s: 0 is not allowed — must be greater than 0",
                     "control.port: 70000 is not allowed — must be at most 65535",
                     "logging.level: 'info' is not allowed — one of DEBUG, INFO, WARNING, ERROR",
                     "station.nmae: unknown key — allowed keys here: name, location, purpose"):
        assert expected in joined


@pytest.mark.parametrize(("text", "expected"), [
    ("", "the file is empty"),
    ("- a\n- b\n", "top level must be a mapping"),
    ("station:\n  name: x\n   bad: 1\n", "YAML syntax error at line 3, column 7"),
    ("station: {name: a}\nserver: {url: 'http://x'}\nstation: {name: b}\n", "line 3: the key 'station' is written twice"),
    ("station: !!python/object:os.system {}\n", "YAML syntax error at line 1"),
])
def test_unreadable_yaml_is_one_clear_error(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config_text(text, source="t.yaml")
    assert str(info.value).startswith("t.yaml: ") and expected in str(info.value)


def test_missing_file_points_to_config_init(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "station.yaml")
    assert "not found" in str(info.value) and "stationflow config init" in str(info.value)


@pytest.mark.parametrize(("section", "key", "value", "expected"), [
    ("server", "url", "ftp://wats", "server.url: 'ftp://wats' is not allowed — must be an http:// or https://"),
    ("server", "url", "http://", "server.url: 'http://' is not allowed"),
    ("server", "connect_timeout_s", "10", "server.connect_timeout_s: '10' is not allowed — must be a number"),
    ("server", "verify_tls", "no", "server.verify_tls: 'no' is not allowed — must be true or false"),
    ("upload", "rate_per_s", 0, "upload.rate_per_s: 0 is not allowed — must be greater than 0"),
    ("spool", "min_free_disk", "1.5B", "spool.min_free_disk: '1.5B' is not allowed — must be a whole number of bytes"),
    ("spool", "max_bytes", "ten gigs", "spool.max_bytes: 'ten gigs' is not allowed — must be a size such as"),
    ("shutdown", "grace_s", 3601, "shutdown.grace_s: 3601 is not allowed — must be at most 3600"),
    ("logging", "json", "yes", "logging.json: 'yes' is not allowed — must be true or false"),
])
def test_field_problems(section: str, key: str, value: Any, expected: str) -> None:
    data = contract_data()
    data[section][key] = value
    problems = problems_of(validate_config_data, data)
    assert any(p.startswith(expected) for p in problems), problems


def test_intake_rules() -> None:
    data = contract_data()
    data["intake"][0]["move_to"] = "./elsewhere"  # after: archive
    data["intake"][1]["converter"] = "mystery"
    problems = problems_of(validate_config_data, data)
    assert problems[0].startswith("intake[0].move_to: './elsewhere' is not allowed — only used when after is 'move'")
    assert problems[1].startswith("intake[1].converter: 'mystery' is not allowed — must be one of wsjf, wsxf, csv")
    data = contract_data()
    data["intake"][1]["converter"] = "site/converters/tester.py:TesterConverter"
    data["intake"][0]["converter"] = "site_converters:Tester"
    assert validate_config_data(data).intake[1].converter.endswith(":TesterConverter")


def test_retry_max_below_initial_is_refused() -> None:
    data = contract_data()
    data["upload"]["retry"] = {"initial_s": 10, "max_s": 5}
    assert problems_of(validate_config_data, data) == [
        "upload.retry.max_s: 5 is not allowed — must be at least initial_s (10)"]


def test_section_of_wrong_shape_lists_its_keys() -> None:
    data = contract_data()
    data["upload"] = [1, 2]
    (problem,) = problems_of(validate_config_data, data)
    assert problem.startswith("upload: [1, 2] is not allowed — must be a mapping with the keys concurrency")


def test_not_a_mapping_at_all() -> None:
    with pytest.raises(ConfigError, match="must be a mapping"):
        validate_config_data(["station"])  # type: ignore[arg-type]


NUMERIC_FIELDS = {
    ("server", "timeout_s"): (0.0, 600.0, False),
    ("server", "connect_timeout_s"): (0.0, 300.0, False),
    ("upload", "concurrency"): (1, 64, True),
    ("upload", "retry", "jitter"): (0.0, 1.0, True),
    ("control", "port"): (0, 65535, True),
    ("shutdown", "grace_s"): (0.0, 3600.0, True),
    ("spool", "max_reports"): (1, 1_000_000_000, True),
}


def _set(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        data = data.setdefault(key, {})
    data[path[-1]] = value


@st.composite
def invalid_numeric(draw: st.DrawFn) -> tuple[tuple[str, ...], Any]:
    path = draw(st.sampled_from(sorted(NUMERIC_FIELDS)))
    low, high, low_ok = NUMERIC_FIELDS[path]
    too_low = (st.floats(max_value=low, exclude_max=low_ok, allow_nan=False) if isinstance(low, float)
               else st.integers(max_value=low - 1))
    too_high = st.floats(min_value=high, exclude_min=True) if isinstance(high, float) \
        else st.integers(min_value=high + 1)
    value = draw(st.one_of(too_low, too_high, st.booleans(), st.text(max_size=5), st.none(),
                           st.lists(st.integers(), max_size=2), st.just(float("nan")), st.just(float("inf"))))
    return path, value


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(invalid_numeric())
def test_invalid_numbers_are_refused_with_their_path(case: tuple[tuple[str, ...], Any]) -> None:
    path, value = case
    data = contract_data()
    _set(data, path, value)
    problems = problems_of(validate_config_data, data)
    dotted = ".".join(path)
    assert any(p.startswith(f"{dotted}: ") and " is not allowed — " in p for p in problems), problems


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)
ANY_FIELD = [("station", "name"), ("server", "url"), ("server", "token"), ("server", "ca_bundle"), ("data_dir",),
             ("intake",), ("upload", "retry"), ("spool", "max_bytes"), ("spool", "min_free_disk"),
             ("logging", "file_max_bytes"), ("logging", "level"), ("control",), ("upload", "rate_per_s")]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(ANY_FIELD), json_values)
@example(("server", "token"), "")  # found by hypothesis once in a while: an empty token is said in words
def test_any_value_anywhere_loads_or_is_a_config_error(path: tuple[str, ...], value: Any) -> None:
    data = contract_data()
    _set(data, path, value)
    try:
        cfg = validate_config_data(data)
    except ConfigError as exc:
        assert exc.problems and all(": " in p for p in exc.problems)
        assert TOKEN not in "\n".join(exc.problems)
        if path == ("server", "token"):
            assert all(p.startswith(("server.token: '********'", "server.token: an empty value is not allowed"))
                       for p in exc.problems), exc.problems
    else:
        assert isinstance(cfg, StationConfig)


# ------------------------------------------------------------------ byte sizes

@pytest.mark.parametrize(("text", "size"), [
    ("10GB", 10 * 10**9), ("500MB", 500 * 10**6), ("500mb", 500 * 10**6), ("1.5GiB", 3 * 2**29),
    ("64KiB", 65536), ("2k", 2000), ("7", 7), (" 3 MB ", 3 * 10**6), ("1TB", 10**12), (1234, 1234), (0, 0),
])
def test_byte_sizes_parse(text: Any, size: int) -> None:
    assert ByteSize.parse(text) == size


@given(st.integers(min_value=0, max_value=2**60))
def test_byte_size_canonical_form_parses_back(n: int) -> None:
    assert ByteSize.parse(format_bytes(n)) == n


def test_byte_size_keeps_what_was_written() -> None:
    cfg = validate_config_data(parse_config_text(MINIMAL + "spool: {max_bytes: 1.5GiB, min_free_disk: 0}\n"))
    saved = yaml.safe_load(dump_for_file(cfg))
    assert saved["spool"] == {"max_bytes": "1.5GiB", "min_free_disk": 0}


# ------------------------------------------------------------------ secrets

def test_token_is_masked_in_repr_dumps_and_problems() -> None:
    cfg = load_config(CONTRACT)
    for text in (repr(cfg), str(cfg), dump_masked(cfg), cfg.model_dump_json(), json.dumps(cfg.model_dump())):
        assert TOKEN not in text
    assert yaml.safe_load(dump_masked(cfg))["server"]["token"] == MASK
    assert TOKEN in dump_for_file(cfg)  # only the file itself has it
    data = contract_data()
    data["server"]["token"] = ["s3cr3t-value"]
    (problem,) = problems_of(validate_config_data, data)
    assert problem.startswith(f"server.token: '{MASK}' is not allowed") and "s3cr3t" not in problem


def test_schema_has_no_secret_and_describes_every_field() -> None:
    schema = StationConfig.model_json_schema()
    server = schema["$defs"]["ServerSection"]["properties"]
    assert server["token"].get("default") is None and server["token"]["anyOf"][0]["writeOnly"] is True
    assert set(schema["required"]) == {"station", "server"}
    for model in [schema, *schema["$defs"].values()]:
        assert model["additionalProperties"] is False, model["title"]
        for name, prop in model["properties"].items():
            assert prop.get("description"), f"{model['title']}.{name}"
    intake = schema["$defs"]["IntakeSection"]["properties"]
    assert intake["after"]["enum"] == ["archive", "move", "delete", "keep"]
    assert schema["$defs"]["UploadSection"]["properties"]["concurrency"]["maximum"] == 64


# ------------------------------------------------------------------ paths, finding the file

def test_resolved_makes_paths_absolute_relative_to_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir("/")
    data = contract_data()
    data["server"]["ca_bundle"] = "certs/ca.pem"
    data["intake"][0]["converter"] = "conv/tester.py:Tester"
    data["intake"][1]["converter"] = "site_module:Tester"
    data["intake"].append({"name": "abs", "watch": str(tmp_path / "abs"), "converter": "wsjf"})
    cfg = resolved(validate_config_data(data), tmp_path / "conf" / "station.yaml")
    base = tmp_path / "conf"
    assert cfg.data_dir == str(base / "stationflow-data")
    assert cfg.intake[0].watch == str(base / "drop" / "json")
    assert cfg.intake[0].converter == f"{base / 'conv' / 'tester.py'}:Tester"
    assert cfg.intake[1].move_to == str(base / "done" / "csv") and cfg.intake[1].converter == "site_module:Tester"
    assert cfg.intake[2].watch == str(tmp_path / "abs")
    assert cfg.server.ca_bundle == str(base / "certs" / "ca.pem")
    assert cfg.server.token is not None and cfg.server.token.get_secret_value() == TOKEN


def test_find_config_path_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert find_config_path(None) == tmp_path / "station.yaml"
    monkeypatch.setenv(ENV_VAR, "env/s.yaml")
    assert find_config_path(None) == tmp_path / "env" / "s.yaml"
    assert find_config_path("/etc/x.yaml") == Path("/etc/x.yaml")


# ------------------------------------------------------------------ saving

def test_save_keeps_backup_and_reloads_equal(tmp_path: Path) -> None:
    target = tmp_path / "station.yaml"
    original = CONTRACT.read_bytes()
    target.write_bytes(original)
    cfg = load_config(target)
    changed = cfg.model_copy(update={"upload": cfg.upload.model_copy(update={"concurrency": 8})})
    save_config(changed, target)
    assert (tmp_path / "station.yaml.bak").read_bytes() == original
    again = load_config(target)
    assert again == changed and again.upload.concurrency == 8
    assert again.server.token is not None and again.server.token.get_secret_value() == TOKEN
    save_config(again, target)
    assert load_config(target) == again
    assert sorted(p.name for p in tmp_path.iterdir()) == ["station.yaml", "station.yaml.bak"]


def test_save_new_file_is_private_and_has_no_backup(tmp_path: Path) -> None:
    target = tmp_path / "new.yaml"
    save_config(load_config(CONTRACT), target)
    assert load_config(target) == load_config(CONTRACT)
    assert not (tmp_path / "new.yaml.bak").exists()
    if os.name == "posix":
        assert target.stat().st_mode & 0o777 == 0o600


def test_failed_backup_leaves_original_unchanged(tmp_path: Path) -> None:
    target = tmp_path / "station.yaml"
    original = CONTRACT.read_bytes()
    target.write_bytes(original)
    (tmp_path / "station.yaml.bak").mkdir()  # the backup cannot be put in place
    cfg = load_config(target).model_copy(update={"data_dir": "/elsewhere"})
    with pytest.raises(StorageError):
        save_config(cfg, target)
    assert target.read_bytes() == original
    assert sorted(p.name for p in tmp_path.iterdir()) == ["station.yaml", "station.yaml.bak"]


def test_failed_write_leaves_original_unchanged(tmp_path: Path) -> None:
    target = tmp_path / "station.yaml"
    original = CONTRACT.read_bytes()
    target.write_bytes(original)
    (tmp_path / f".station.yaml.{os.getpid()}.tmp").mkdir()  # the temp file cannot be created
    with pytest.raises(StorageError):
        save_config(load_config(target), target)
    assert target.read_bytes() == original


def test_save_into_a_folder_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "station.yaml"
    folder.mkdir()
    with pytest.raises(StorageError, match="it is a folder"):
        save_config(load_config(CONTRACT), folder)
    assert folder.is_dir() and list(folder.iterdir()) == []


def test_starter_loads_and_quotes_the_name() -> None:
    cfg = validate_config_data(parse_config_text(starter_config_text('Line "3": #1')))
    assert cfg.station.name == 'Line "3": #1' and cfg.server.url == "http://127.0.0.1:8080"


# ------------------------------------------------------------------ the CLI

def test_cli_init_then_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "station.yaml"
    assert main(["-c", str(path), "config", "init", "--station-name", "ST-9"]) == 0
    assert "wrote a starter config" in capsys.readouterr().out
    assert main(["-c", str(path), "config", "validate"]) == 0
    assert capsys.readouterr().out.strip() == f"OK: {path}"
    assert load_config(path).station.name == "ST-9"


def test_cli_init_refuses_to_overwrite_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "station.yaml"
    path.write_text("keep me\n")
    assert main(["config", "init", str(path)]) == 3
    assert "already exists" in capsys.readouterr().err and path.read_text() == "keep me\n"
    assert main(["config", "init", "--force", str(path)]) == 0
    assert (tmp_path / "station.yaml.bak").read_text() == "keep me\n"
    load_config(path)


def test_cli_init_uses_the_environment_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "sub" / "from-env.yaml"))
    assert main(["config", "init"]) == 0
    assert main(["config", "validate"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"OK: {tmp_path / 'sub' / 'from-env.yaml'}"


def test_cli_validate_reports_problems(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "validate", str(CONFIGS / "unknown_key.yaml")]) == 3
    captured = capsys.readouterr()
    assert "OK" not in captured.out
    assert "  - upload.concurency: unknown key — allowed keys here: concurrency, rate_per_s, retry" in captured.err
    assert main(["config", "validate", str(CONFIGS / "missing.yaml")]) == 3
    assert "stationflow config init" in capsys.readouterr().err


def test_cli_show_masks_the_token(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "station.yaml"
    path.write_bytes(CONTRACT.read_bytes())
    assert main(["-c", str(path), "config", "show"]) == 0
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err and MASK in out.out
    shown = yaml.safe_load(out.out)
    assert shown["data_dir"] == str(tmp_path / "stationflow-data") and shown["shutdown"] == {"grace_s": 60.0}
    assert main(["-c", str(path), "config", "show", "--json"]) == 0
    out = capsys.readouterr()
    assert TOKEN not in out.out + out.err
    data = json.loads(out.out)
    assert data["server"]["token"] == MASK and data["spool"]["max_bytes"] == "10GB"
    assert data["intake"][1]["move_to"] == str(tmp_path / "done" / "csv")


def test_cli_schema_prints_json_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "StationConfig" and "server" in schema["properties"]


def test_round_trip_of_a_config_with_every_section(tmp_path: Path) -> None:
    data = copy.deepcopy(contract_data())
    data["server"].update({"ca_bundle": "ca.pem", "verify_tls": False, "connect_timeout_s": 2.5})
    data["intake"][0].update({"recursive": True, "arguments": {"sep": ";", "n": [1, 2]}, "max_file_bytes": 1000})
    data["logging"].update({"json": True, "file_max_bytes": "1MiB", "file_backups": 0})
    data["upload"]["rate_per_s"] = None
    cfg = validate_config_data(data)
    save_config(cfg, tmp_path / "s.yaml")
    assert load_config(tmp_path / "s.yaml") == cfg
    assert cfg.logging.json_ is True and cfg.logging.file_max_bytes == 2**20


def test_changes_to_sections_the_file_left_out_are_saved(tmp_path: Path) -> None:
    cfg = validate_config_data(parse_config_text(MINIMAL + "intake: [{name: a, watch: w, converter: csv}]\n"))
    cfg.upload.retry.max_s = 50          # upload: was not in the file at all
    cfg.intake[0].patterns.append("*.x")  # changed in place
    with pytest.raises(ValueError):
        cfg.upload.concurrency = 0        # assignments are validated too
    save_config(cfg, tmp_path / "s.yaml")
    again = load_config(tmp_path / "s.yaml")
    assert again == cfg and again.upload.retry.max_s == 50 and again.intake[0].patterns == ["*", "*.x"]
    assert "spool" not in yaml.safe_load((tmp_path / "s.yaml").read_text())  # defaults stay implicit


@pytest.mark.parametrize(("text", "says"), [
    ("a: " + "[" * 100_000 + "]" * 100_000 + "\n", "levels deep"),
    ("x: &a [1]\n" + "".join(f"y{i}: &b{i} [*a, *a]\n" for i in range(150)), "aliases"),
    ("k: " + "v" * (2 * 1024 * 1024) + "\n", "bytes"),
])
def test_hostile_yaml_is_refused_fast_with_one_line(tmp_path: Path, text: str, says: str) -> None:
    """A config nested 100,000 levels deep crashed the config watcher (RecursionError) and printed
    a traceback from `config validate`; alias bombs and huge files are refused the same way."""
    import time as time_module

    path = tmp_path / "station.yaml"
    path.write_text(text)
    started = time_module.monotonic()
    with pytest.raises(ConfigError, match=says) as caught:
        load_config(path)
    assert time_module.monotonic() - started < 1.0
    assert caught.value.exit_code == 3
    done = subprocess.run([sys.executable, "-m", "stationflow", "config", "validate", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 3 and "Traceback" not in done.stderr and says in done.stderr


@pytest.mark.parametrize("watch", ["./data", "./data/inbox", "data/../data"])
def test_a_watch_folder_inside_the_data_dir_is_refused(tmp_path: Path, watch: str) -> None:
    """`watch: ./data` made the service reject its own control.json, and `stationflow stop` then
    said "not running": refused when the config is read (exit 3), naming the field."""
    path = tmp_path / "station.yaml"
    path.write_text(f"station: {{name: S}}\nserver: {{url: 'http://127.0.0.1:9'}}\ndata_dir: ./data\n"
                    f"intake:\n  - {{name: a, watch: {watch}, converter: wsjf}}\n")
    done = subprocess.run([sys.executable, "-m", "stationflow", "config", "validate", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 3 and "intake[0].watch" in done.stderr and "inside the data dir" in done.stderr
