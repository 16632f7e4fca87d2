"""Reading, checking, resolving and saving the station config file.

Every way a config can be wrong ends in one ``ConfigError`` whose ``problems`` are one line per
field — ``upload.concurency: unknown key — allowed keys here: concurrency, rate_per_s, retry`` —
so a person fixes the whole file in one pass. The token never appears in a message or a dump
unless the file itself is being written.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import stat
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path, PureWindowsPath
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from .config_text import NotEditable, edit_config_text
from .durable import fsync_dir, replace
from .yaml_limits import YamlTooComplex, check_yaml_limits
from .errors import ConfigError, StorageError
from .install.winacl import restrict
from ..schemas.config import MASK, IntakeSection, StationConfig, allowed_keys, section_model

ENV_VAR = "STATIONFLOW_CONFIG"
DEFAULT_NAME = "station.yaml"
_NEW_FILE_MODE = 0o600  # the file holds the server token
_INIT_HINT = "run `stationflow config init` to write a starter, or pass -c PATH"
_NO_VALUE = object()


# --------------------------------------------------------------------------------------------
# Finding and loading
# --------------------------------------------------------------------------------------------

def find_config_path(cli_value: str | None) -> Path:
    """``-c PATH``, else ``$STATIONFLOW_CONFIG``, else ``./station.yaml`` if it exists, else the
    per-OS location if that exists (:func:`system_config_path`), else ``./station.yaml`` (for the
    error message and ``config init``) — as an absolute path."""
    value = cli_value or os.environ.get(ENV_VAR)
    if value:
        return Path(os.path.abspath(os.path.expanduser(value)))
    local = Path(os.path.abspath(DEFAULT_NAME))
    if local.exists():
        return local
    system = system_config_path()
    return system if system.is_file() else local


def system_config_path() -> Path:
    """Where a station's config lives when installed as a service on this OS."""
    return Path(system_locations(_this_os())[0])


def system_data_dir() -> Path:
    """The data dir a station installed as a service uses on this OS."""
    return Path(system_locations(_this_os())[1])


def system_locations(os_name: str, environ: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(config file, data dir) for ``windows`` (under ``%ProgramData%``) or ``linux`` (``/etc``, ``/var/lib``)."""
    if os_name == "windows":
        env = os.environ if environ is None else environ
        base = str(PureWindowsPath(env.get("ProgramData") or env.get("PROGRAMDATA") or r"C:\ProgramData",
                                   "stationflow"))
        return str(PureWindowsPath(base, DEFAULT_NAME)), str(PureWindowsPath(base, "data"))
    return "/etc/stationflow/" + DEFAULT_NAME, "/var/lib/stationflow"


def _this_os() -> str:
    return "windows" if sys.platform == "win32" else "linux"


def load_config(path: str | os.PathLike[str]) -> StationConfig:
    """Read and validate the file at ``path`` (paths in it stay as written; see ``resolved``)."""
    data = read_config_data(path)
    return _validate(data, f"{path}: the station config is not valid")


def read_config_data(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The file's YAML as a mapping, or a ConfigError that says what is wrong with the file itself."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {file}", hint=_INIT_HINT) from None
    except IsADirectoryError:
        raise ConfigError(f"{file} is a folder, not a config file", hint="pass the YAML file with -c PATH") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not a UTF-8 text file (byte {exc.start})",
                          hint="save the file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {file}: {exc.strerror}", hint="check the file's permissions") from None
    return parse_config_text(text, source=str(file))


def parse_config_text(text: str, *, source: str = "config") -> dict[str, Any]:
    """YAML text → mapping; syntax errors with line and column, duplicate keys refused; text too
    large, deep or aliased for a config refused before it is parsed (see yaml_limits)."""
    try:
        check_yaml_limits(text)
    except YamlTooComplex as exc:
        raise ConfigError(f"{source}: {exc}", hint="a station config is a small, shallow YAML file: "
                                                   "start again from `stationflow config init`") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _DuplicateKey as exc:
        raise ConfigError(f"{source}: {exc}", hint="keep one of them") from None
    except RecursionError:  # a shape the bounds above did not foresee: refused, never a traceback
        raise ConfigError(f"{source}: nested too deeply to read",
                          hint="a station config is a small, shallow YAML file") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(p for p in (exc.context, exc.problem) if p) or "invalid YAML"
        raise ConfigError(f"{source}: YAML syntax error{where}: {what}",
                          hint="fix the line shown (indent with spaces, quote values containing ': ' or '#')"
                          ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {' '.join(str(exc).split())}") from None  # one line
    if data is None:
        raise ConfigError(f"{source}: the file is empty", hint=_INIT_HINT)
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections (station:, server:, ...), "
                          f"not {_kind(data)}", hint=_INIT_HINT)
    return data


def validate_config_data(data: Any) -> StationConfig:
    """Validate a mapping (from a file, the control protocol or the configurator) into a config."""
    if not isinstance(data, dict):
        raise ConfigError(f"the station config must be a mapping of sections, not {_kind(data)}")
    return _validate(data, "the station config is not valid")


def _validate(data: dict[str, Any], message: str) -> StationConfig:
    try:
        return StationConfig.model_validate(data)
    except ValidationError as exc:
        problems = describe_errors(exc, data)
    # Raised outside the except block: the pydantic error (which shows input values) is not chained.
    count = len(problems)
    raise ConfigError(f"{message} ({count} problem{'s' if count != 1 else ''})", problems=problems,
                      hint="fix the fields listed, then run `stationflow config validate`")


class _DuplicateKey(Exception):
    """A mapping names the same key twice: which value did the person mean?"""


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key written twice (PyYAML keeps the last one without a word)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            continue  # SafeLoader reports unhashable keys itself
        if key in seen:
            raise _DuplicateKey(f"line {key_node.start_mark.line + 1}: the key {key!r} is written twice "
                                f"(first on line {seen[key] + 1})")
        seen[key] = key_node.start_mark.line
    mapping: dict[Any, Any] = yaml.SafeLoader.construct_mapping(loader, node, deep=deep)
    return mapping


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


# --------------------------------------------------------------------------------------------
# Errors → one line per field
# --------------------------------------------------------------------------------------------

_SIMPLE = {
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be text (put it in quotes)",
    "list_type": "must be a list, e.g. [\"*.json\"]",
    "dict_type": "must be a mapping of key: value",
    "none_required": "must be empty",
    "string_pattern_mismatch": "may contain only letters, digits, '.', '_' and '-', and must start with a "
                               "letter or digit",
}


def describe_errors(exc: ValidationError, data: Any = None) -> list[str]:
    """One line per pydantic error: ``path: value is not allowed — what is allowed``."""
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        line = _describe(err)
        if line not in lines:
            lines.append(line)
    return lines


def _describe(err: Any) -> str:
    loc: tuple[str | int, ...] = tuple(err["loc"])
    kind: str = err["type"]
    ctx: dict[str, Any] = err.get("ctx") or {}
    value: Any = err.get("input", _NO_VALUE)
    path = format_path(loc)

    if kind == "extra_forbidden":
        model = section_model(loc[:-1])
        keys = allowed_keys(model) if model else []
        text = f"{path}: unknown key — allowed keys here: {', '.join(keys)}"
        guess = difflib.get_close_matches(str(loc[-1]), keys, n=1)
        return text + (f" (did you mean '{guess[0]}'?)" if guess else "")
    if kind == "missing":
        return f"{path}: missing — {_missing_advice(loc)}"
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        model = section_model(loc)
        listed = f" with the keys {', '.join(allowed_keys(model))}" if model else ""
        return f"{path}: {_show(value, loc)} is not allowed — must be a mapping{listed}"

    if kind == "config_rule":
        path = format_path(loc, ctx.get("at", ""))
        value = ctx.get("value", value if not ctx.get("at") else _NO_VALUE)
        what = err["msg"]
    elif kind == "byte_size":
        what = err["msg"]
    elif kind == "value_error":
        what = str(ctx.get("error", err["msg"]))
    elif kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        what = f"one of {', '.join(choices)}" if choices else err["msg"]
    elif kind == "greater_than":
        what = f"must be greater than {_num(ctx['gt'])}"
    elif kind == "greater_than_equal":
        what = f"must be at least {_num(ctx['ge'])}"
    elif kind == "less_than":
        what = f"must be less than {_num(ctx['lt'])}"
    elif kind == "less_than_equal":
        what = f"must be at most {_num(ctx['le'])}"
    elif kind == "string_too_short":
        n = ctx.get("min_length", 1)
        what = "must not be empty" if n == 1 else f"must have at least {n} characters"
    elif kind == "string_too_long":
        what = f"must have at most {ctx.get('max_length')} characters"
    elif kind == "too_short":
        n = ctx.get("min_length", 1)
        what = "must not be empty" if n == 1 else f"must have at least {n} items"
    elif kind in _SIMPLE:
        what = _SIMPLE[kind]
    else:
        msg = str(err["msg"])
        what = msg[:1].lower() + msg[1:]
    if value is _NO_VALUE:
        return f"{path}: {what}"
    if value == "" and not isinstance(value, bool):  # "'' is not allowed" reads like a program talking
        return f"{path}: an empty value is not allowed — {'enter one' if what == 'must not be empty' else what}"
    return f"{path}: {_show(value, loc)} is not allowed — {what}"


def format_path(loc: Iterable[str | int], suffix: str = "") -> str:
    """``('intake', 1, 'after')`` → ``intake[1].after``."""
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    text += suffix
    return text.lstrip(".") or "(top level)"


def _show(value: Any, loc: tuple[str | int, ...]) -> str:
    """A value as a person wrote it (YAML-ish), never a secret, never a page long."""
    if value is _NO_VALUE:
        return ""
    if any(part == "token" for part in loc):
        return repr(MASK)
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif value is None:
        text = "null (empty)"
    elif isinstance(value, str):
        text = repr(value)
    elif isinstance(value, (int, float)):
        text = _num(value)
    else:
        try:
            text = json.dumps(value, default=str, ensure_ascii=False)
        except (TypeError, ValueError):
            text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _missing_advice(loc: tuple[str | int, ...]) -> str:
    """What the missing key is for; for a whole missing section, which of its keys are required."""
    model = section_model(loc[:-1])
    field = model.model_fields.get(str(loc[-1])) if model else None
    if field is None or not field.description:
        return "required: add this key"
    what = (field.description[:1].lower() + field.description[1:]).rstrip(".")
    section = section_model(loc)
    if section is not None:
        needed = [f.alias or name for name, f in section.model_fields.items() if f.is_required()]
        return f"required section ({what}); it needs at least: {', '.join(needed)}"
    return f"required: {what}"


def _num(value: Any) -> str:
    """0.0 → "0", 0.5 → "0.5": bounds read as a person writes them."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _kind(value: Any) -> str:
    return {list: "a list", str: "a text", int: "a number", float: "a number", bool: "true/false"}.get(
        type(value), type(value).__name__)


# --------------------------------------------------------------------------------------------
# Paths relative to the file
# --------------------------------------------------------------------------------------------

def resolved(cfg: StationConfig, config_path: str | os.PathLike[str]) -> StationConfig:
    """A copy with data_dir, watch folders, move_to, ca_bundle and custom converter files made absolute.

    Relative paths in the file are relative to the file's folder (the contract), so a service
    started from any working directory reads the same folders.
    """
    base = Path(os.path.abspath(config_path)).parent

    def absolute(value: str) -> str:
        return os.path.normpath(base / os.path.expanduser(value))

    intakes = [
        intake.model_copy(update={
            "watch": absolute(intake.watch),
            "move_to": absolute(intake.move_to) if intake.move_to else intake.move_to,
            "converter": _resolve_converter(intake.converter, absolute),
        })
        for intake in cfg.intake
    ]
    server = cfg.server.model_copy(
        update={"ca_bundle": absolute(cfg.server.ca_bundle) if cfg.server.ca_bundle else None})
    control = cfg.control.model_copy(update={"submit_folders": [absolute(f) for f in cfg.control.submit_folders]})
    data_dir = absolute(cfg.data_dir)
    _check_folders_apart(data_dir, intakes)
    lifecycles = absolute(cfg.lifecycles) if cfg.lifecycles else None
    return cfg.model_copy(update={"data_dir": data_dir, "intake": intakes, "server": server, "control": control,
                                  "lifecycles": lifecycles})


def _inside(path: str, folder: str) -> bool:
    here, there = Path(os.path.realpath(path)), Path(os.path.realpath(folder))
    return here == there or there in here.parents


def _check_folders_apart(data_dir: str, intakes: list[IntakeSection]) -> None:
    """A watch folder must not be the data dir or inside it: the service would take its own files
    (control.json, the spool) as results, reject them, and lose its control door. (A data dir
    inside a recursive watch folder is fine: intake never lists it.)"""
    problems = []
    for index, intake in enumerate(intakes):
        if _inside(intake.watch, data_dir):
            problems.append(f"intake[{index}].watch: {intake.watch} is inside the data dir {data_dir} — "
                            "watch the folder the test equipment writes to, not the station's own folder")
    if problems:
        raise ConfigError(f"the watch folders and the data dir overlap ({len(problems)} problem"
                          f"{'s' if len(problems) != 1 else ''})", problems=problems,
                          hint="fix the fields listed, then run `stationflow config validate`")


def _resolve_converter(spec: str, absolute: Any) -> str:
    """``conv/my.py:Class`` → ``/abs/conv/my.py:Class``; built-ins and ``module:Class`` stay as they are."""
    target, sep, cls_name = spec.rpartition(":")
    if sep and target.lower().endswith(".py"):
        return f"{absolute(target)}:{cls_name}"
    return spec


# --------------------------------------------------------------------------------------------
# Showing and saving
# --------------------------------------------------------------------------------------------

def config_dict(cfg: StationConfig, *, reveal_secrets: bool = False, exclude_unset: bool = False) -> dict[str, Any]:
    """Plain data (str, int, float, bool, list, dict) as written in the file; token masked by default."""
    return cfg.model_dump(mode="json", by_alias=True, exclude_unset=exclude_unset,
                          context={"reveal_secrets": reveal_secrets})


def dump_masked(cfg: StationConfig) -> str:
    """The whole effective config (defaults included) as YAML, with the token shown as ********."""
    return _yaml(config_dict(cfg))


def dump_for_file(cfg: StationConfig) -> str:
    """What ``save_config`` writes: the keys that were set (defaults stay implicit), real token."""
    data = _explicit(cfg, config_dict(cfg, reveal_secrets=True))
    return ("# station config written by stationflow; relative paths are relative to this file's folder\n"
            + _yaml(data))


def _explicit(model: BaseModel, dumped: dict[str, Any]) -> dict[str, Any]:
    """The keys that were written or changed (set, or different from the default), at every depth.

    ``exclude_unset`` alone would drop a section the file left out even after one of its keys was
    assigned (``cfg.upload.concurrency = 8``), or a list changed in place: a setting lost on save.
    """
    out: dict[str, Any] = {}
    for name, field in type(model).model_fields.items():
        key = field.alias or name
        value = getattr(model, name)
        explicit = name in model.model_fields_set or field.is_required() or \
            value != field.get_default(call_default_factory=True)
        if isinstance(value, BaseModel):
            sub = _explicit(value, dumped[key])
            if sub or explicit:
                out[key] = sub
        elif isinstance(value, list) and value and all(isinstance(v, BaseModel) for v in value):
            out[key] = [_explicit(v, d) for v, d in zip(value, dumped[key], strict=True)]
        elif explicit:
            out[key] = dumped[key]
    return out


class ConfigChangedOnDisk(ConfigError):
    """The file is not what the editor loaded: someone changed it meanwhile (by hand, the service,
    another window). Saving now would silently undo that change, so nothing is written."""

    def __init__(self, path: Path, current: str | None) -> None:
        super().__init__(f"{path} was changed on disk after it was loaded; not saved",
                         hint="reload it, or merge your changes into the new version, then save again")
        self.current = current


def read_config_text(path: str | os.PathLike[str]) -> str | None:
    """The file's text as it is now (None when it does not exist): what a later save compares with."""
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return ""


def save_config(cfg: StationConfig, path: str | os.PathLike[str], *, expected: str | None | object = _NO_VALUE) -> str:
    """Write ``cfg`` to ``path`` atomically, keeping the file's comments and number types; the previous
    file is kept as ``<name>.bak`` with the same permissions. Returns the text written.

    ``expected``: the file's text when it was loaded (None: it did not exist). If the file is not
    that any more, ``ConfigChangedOnDisk`` is raised and nothing is written.
    """
    current = read_config_text(path)
    if expected is not _NO_VALUE and current != expected:
        raise ConfigChangedOnDisk(Path(path), current)
    text = render_config(cfg, current)
    write_config_text(path, text)
    return text


def render_config(cfg: StationConfig, current: str | None) -> str:
    """The file's text with ``cfg``'s values: ``current`` edited in place when its shape allows, else
    the commented ``config init`` format with the values, else a plain dump — whichever loads back
    as exactly ``cfg`` first. Never returns a text that would not load (a station that does not start)."""
    want = config_dict(cfg, reveal_secrets=True)
    explicit = _explicit(cfg, want)
    candidates: list[str] = []
    # A file that exists is edited in place; one whose shape the editor refuses is rewritten in the
    # commented starter format. A new file is written plain, with the defaults left implicit.
    for base in ((current, starter_config_text(cfg.station.name)) if current else ()):
        try:
            old = config_dict(validate_config_data(parse_config_text(base)), reveal_secrets=True)
            candidates.append(edit_config_text(base, old, _to_write(want, explicit)))
        except (ConfigError, NotEditable):
            continue
    candidates.append(dump_for_file(cfg))
    for text in candidates:
        try:
            if config_dict(validate_config_data(parse_config_text(text)), reveal_secrets=True) == want:
                return text
        except ConfigError:
            continue
    raise ConfigError("the config could not be written in a form that loads back the same",
                      hint="report this; nothing was saved")


def _to_write(full: dict[str, Any], explicit: dict[str, Any]) -> dict[str, Any]:
    """``full`` where lists come from ``explicit`` (only the keys set in each item) and unset empty
    values are left out (a cleared optional field removes its line rather than writing null)."""
    out: dict[str, Any] = {}
    for key, value in full.items():
        if isinstance(value, dict):
            sub = explicit.get(key)
            out[key] = _to_write(value, sub if isinstance(sub, dict) else {})
        elif isinstance(value, list) and key in explicit:
            out[key] = explicit[key]
        elif value is None and key not in explicit:
            continue
        else:
            out[key] = value
    return out


def write_config_text(path: str | os.PathLike[str], text: str) -> None:
    """Atomic replace with a durable ``.bak`` of the old bytes; the original is untouched on any failure.

    Order: old bytes → ``<name>.bak`` (temp, fsync, rename, fsync dir); new text → temp in the same
    folder, fsync, rename over ``path``, fsync dir. A crash at any point leaves either the old
    file, or the new file with the old one in ``.bak``. Both files get the original's permissions
    (0600 for a new file) from the moment they exist: the file holds the server token.
    """
    target = Path(path)
    if target.is_dir():
        raise StorageError(f"cannot save the config to {target}: it is a folder",
                           hint="give the path of a .yaml file")
    mode = _NEW_FILE_MODE
    try:
        old = target.read_bytes()
        mode = stat.S_IMODE(target.stat().st_mode)
    except FileNotFoundError:
        old = None
    except OSError as exc:
        raise StorageError(f"cannot read {target} to keep a backup: {exc.strerror}",
                           hint="nothing was changed; check the file's permissions") from None
    if old is not None:
        _private_replace(target.with_name(target.name + ".bak"), old, mode)
    _private_replace(target, text.encode("utf-8"), mode)


def _private_replace(target: Path, data: bytes, mode: int) -> None:
    """Temp file created with ``mode`` (never wider, not even for an instant), fsynced, renamed, dir fsynced."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), mode & 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
            if hasattr(os, "fchmod"):
                os.fchmod(fd, mode)
        finally:
            os.close(fd)
        restrict(tmp)  # Windows: SYSTEM, Administrators and this account only (install/winacl.py)
        replace(tmp, target)
    except (OSError, StorageError) as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, StorageError):
            raise
        raise StorageError(f"cannot save the config to {target}: {exc.strerror}",
                           hint="nothing was changed") from None
    fsync_dir(target.parent)


def _yaml(data: dict[str, Any]) -> str:
    return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100))


# --------------------------------------------------------------------------------------------
# Advice that is not an error
# --------------------------------------------------------------------------------------------

def config_warnings(cfg: StationConfig) -> list[str]:
    """Things a valid config may still get wrong at run time; ``cfg`` should be ``resolved``."""
    notes: list[str] = []
    if cfg.server.token is None:
        notes.append("server.token: not set — servers that require a token will refuse every upload")
    if cfg.server.url.lower().startswith("https") and not cfg.server.verify_tls:
        notes.append("server.verify_tls: false — the server's certificate is not checked")
    if cfg.server.ca_bundle and not Path(cfg.server.ca_bundle).is_file():
        notes.append(f"server.ca_bundle: {cfg.server.ca_bundle} does not exist")
    if not cfg.intake:
        notes.append("intake: no watched folders — only `stationflow submit` will add reports")
    for index, intake in enumerate(cfg.intake):
        if not Path(intake.watch).is_dir():
            notes.append(f"intake[{index}].watch: folder {intake.watch} does not exist yet")
    return notes


# --------------------------------------------------------------------------------------------
# The starter file
# --------------------------------------------------------------------------------------------

_STARTER = """\
# stationflow station config — written by `stationflow config init`.
# Check it with `stationflow config validate`; every key is described by `stationflow config schema`.
# Relative paths are relative to this file's folder. Sizes: 500MB, 10GB (1000s), 1.5GiB (1024s) or bytes.
# Keys left out take their defaults (shown here as comments).

station:
  name: {name}                 # stamped as machineName into reports that lack one
  # location: Line 1
  # purpose: Production

server:
  url: http://127.0.0.1:8080   # the WATS server (http:// or https://); this one is `stationflow emulator`
  # token: PASTE-TOKEN-HERE    # as issued by the WATS server (already base64); sent as "Basic <token>"
  # verify_tls: true           # check the server's certificate
  # ca_bundle: ./internal-ca.pem   # for a server behind an internal certificate authority
  # timeout_s: 30              # read timeout, seconds
  # connect_timeout_s: 10

data_dir: {data_dir}   # spool, source copies, archive, logs, lock, control token

# Watched folders. Each file picked up becomes reports in the spool before the source is touched.
intake: []
#  - name: ict-json            # unique; letters, digits, . _ -
#    watch: ./drop/json
#    patterns: ["*.json"]
#    recursive: false
#    converter: wsjf           # wsjf | wsxf | csv | atml | wstf | path/to/file.py:ClassName | module:ClassName
#    settle_ms: 1000           # wait until the file has not changed for this long
#    after: archive            # archive | move | delete | keep
#    # move_to: ./done         # required when after: move
#    max_file_bytes: 50MB
#    timeout_s: 60             # per file
#    arguments: {{}}            # passed to the converter as they are

upload:
  concurrency: 4               # reports sent at the same time (1..64)
  rate_per_s: 100              # most reports per second; null = unlimited
  retry:
    initial_s: 1
    max_s: 300
    multiplier: 2.0
    jitter: 0.2                # ±20%
    offline_after: 5           # consecutive failures before the server counts as offline

spool:                         # a full spool refuses new work; it never drops a report
  max_reports: 100000
  max_bytes: 10GB
  min_free_disk: 500MB
  keep_sent_days: 7

shutdown:
  grace_s: 60                  # in-flight work may finish for this long when stopping

control:
  port: 0                      # 0 = pick a free port on 127.0.0.1 and record it in data_dir

logging:
  level: INFO                  # DEBUG | INFO | WARNING | ERROR
  json: false
  file_max_bytes: 10MB
  file_backups: 5
"""


def starter_config_text(station_name: str = "STATION-01", data_dir: str = "./stationflow-data") -> str:
    """A commented starter file that loads as it is (name and data dir quoted safely for YAML)."""
    folder = data_dir if re.fullmatch(r"[\w./-]+", data_dir) else json.dumps(data_dir, ensure_ascii=False)
    return _STARTER.format(name=json.dumps(station_name, ensure_ascii=False), data_dir=folder)


def write_starter(path: str | os.PathLike[str], *, station_name: str, force: bool = False,
                  data_dir: str = "./stationflow-data") -> Path:
    """Write the starter to ``path``; refuse an existing file unless ``force`` (then it goes to ``.bak``)."""
    target = Path(path)
    if target.exists() and not force:
        raise ConfigError(f"{target} already exists; not overwritten",
                          hint="pass --force to replace it (the old file is kept as "
                               f"{target.name}.bak), or give another PATH")
    text = starter_config_text(station_name, data_dir)
    validate_config_data(parse_config_text(text, source="starter"))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create the folder {target.parent}: {exc.strerror}") from None
    write_config_text(target, text)
    return target


__all__ = [
    "ConfigChangedOnDisk", "ENV_VAR", "config_dict", "read_config_text", "render_config", "config_warnings", "describe_errors", "dump_for_file", "dump_masked",
    "find_config_path", "format_path", "load_config", "parse_config_text", "read_config_data", "resolved",
    "save_config", "starter_config_text", "system_config_path", "system_data_dir", "system_locations",
    "validate_config_data", "write_config_text", "write_starter",
]
