"""Converters: small classes that turn one equipment file into WSJF report dicts.

A converter is any class with a ``name``, file ``patterns`` and a method
``convert(source, context)`` that yields report dicts (several per file are allowed) or, when the
file already holds a whole WSJF document, its bytes as they are. Subclassing :class:`Converter`
is a convenience, not a requirement::

    class MyTester(Converter):
        name = "my-tester"
        patterns = ("*.log",)

        def convert(self, source, context):
            yield {"type": "T", "pn": ..., "sn": ..., ...}

Converters always run in a worker process (``convert/worker.py``): one that hangs, raises or
eats memory costs that file, never the service. What a converter yields goes through
:func:`finish_reports`, which stamps the station identity into reports that lack it, gives a
report without an id a *deterministic* one (so converting the same file again after a crash gives
the same ids, which the server replaces instead of duplicating), serialises each dict once and
validates every report before the first one is accepted.

A custom converter is named in the config as ``path/to/file.py:ClassName`` or
``package.module:ClassName``.
"""

from __future__ import annotations

import abc

import hashlib
import importlib
import importlib.util
import json
import sys
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from ..errors import ConfigError, InvalidInput
from ...schemas.wsjf import ReportValidationError, parse_header

__all__ = [
    "BUILTIN",
    "ConversionError",
    "ConvertContext",
    "Converter",
    "ConverterLoadError",
    "WsjfConverter",
    "deterministic_id",
    "finish_reports",
    "load_converter",
]

#: uuid5 namespace of the ids stationflow derives for reports that have none.
ID_NAMESPACE = uuid.UUID("6f1c6a52-55b8-4d3e-9a51-0c7d7f3b2e10")

#: The fields stamped from the station config into reports that lack them.
STAMPED = {"machineName": "station_name", "location": "location", "purpose": "purpose"}
_STAMP_HINT = {"machineName": "station.name", "location": "station.location", "purpose": "station.purpose"}


class ConversionError(InvalidInput):
    """The input file cannot become reports: a message for the person, no traceback needed.

    Converters raise it for bad input (``raise ConversionError("row 3: no serial number")``);
    anything else a converter raises is reported with the first lines of its traceback.
    """


class ConverterLoadError(ConfigError):
    """A converter named in the config cannot be found or is not a converter."""


@dataclass(frozen=True)
class ConvertContext:
    """What a converter may know besides the file: who the station is and the intake's settings.

    ``source_name`` is the file's name in the watch folder (the converter reads a copy whose name
    differs); ``source_mtime`` is its modification time (epoch seconds), a fallback start time
    for formats that do not record one.
    """

    station_name: str
    location: str | None = None
    purpose: str | None = None
    intake: str = ""
    arguments: Mapping[str, Any] = field(default_factory=dict)
    source_name: str = ""
    source_mtime: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"station_name": self.station_name, "location": self.location, "purpose": self.purpose,
                "intake": self.intake, "arguments": dict(self.arguments), "source_name": self.source_name,
                "source_mtime": self.source_mtime}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConvertContext:
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class Converter(abc.ABC):
    """Base class for converters (optional: any class with ``name`` and ``convert`` works)."""

    name: ClassVar[str] = ""
    patterns: ClassVar[tuple[str, ...]] = ("*",)

    @abc.abstractmethod
    def convert(self, source: Path, context: ConvertContext) -> Iterable[dict[str, Any] | bytes]:
        """Yield the reports of ``source`` (dicts, or the bytes of a complete WSJF file)."""


# --------------------------------------------------------------------------------- built-in: wsjf

class WsjfConverter(Converter):
    """WSJF files as they are: one report object, or a JSON array of report objects.

    A single report is passed on as the very bytes of the file (nothing re-serialised, every field
    kept) unless it needs a stamp or an id.
    """

    name = "wsjf"
    patterns = ("*.json",)

    def convert(self, source: Path, context: ConvertContext) -> Iterable[dict[str, Any] | bytes]:
        raw = read_text_bytes(source, what="a WSJF file")
        head = raw.lstrip()[:1]
        if head == b"[":
            try:
                items = json.loads(raw)
            except ValueError as exc:
                raise ConversionError(f"not valid JSON: {exc}") from None
            if not items:
                raise ConversionError("the file holds an empty list: no report in it")
            for index, item in enumerate(items):
                if not isinstance(item, dict):
                    raise ConversionError(f"item #{index + 1} of the list is not a report object")
            reports: list[dict[str, Any]] = items
            return reports
        if head != b"{":
            raise ConversionError("not a WSJF report: the file does not start with '{' or '['")
        return [raw]


def read_text_bytes(source: Path, *, what: str) -> bytes:
    """The file's bytes, refusing what is plainly not UTF-8 text; a UTF-8 BOM is dropped."""
    raw = source.read_bytes()
    if not raw or raw.isspace():  # not raw.strip(): that copies a file ending in a newline
        raise ConversionError("the file is empty" if not raw else "the file holds only white space")
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in raw[:4096]:
        raise ConversionError(f"not UTF-8 text (it looks like UTF-16 or binary data) — {what} must be "
                              "saved as UTF-8")
    return raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw


# --------------------------------------------------------------------------------- loading

BUILTIN: dict[str, str] = {
    "wsjf": f"{__name__}:WsjfConverter",
    "wsxf": f"{__package__}.wsxf:WsxfConverter",
    "csv": f"{__package__}.csvfile:CsvConverter",
    "atml": f"{__package__}.atml:AtmlConverter",
    "wstf": f"{__package__}.wstf:WstfConverter",
}

_loaded: dict[str, type] = {}


def load_converter(spec: str) -> type:
    """The converter class named by ``spec``: a built-in name, ``file.py:Class`` or ``module:Class``.

    Importing runs the module's code: call this in a worker process, not in the service.
    """
    spec = spec.strip()
    if spec in _loaded:
        return _loaded[spec]
    target = BUILTIN.get(spec, spec)
    module_name, sep, class_name = target.rpartition(":")
    if not sep or not module_name or not class_name.isidentifier():
        raise ConverterLoadError(f"converter {spec!r} is neither a built-in nor 'file.py:Class' / 'module:Class'",
                                 hint=f"built-ins: {', '.join(BUILTIN)}")
    if module_name.lower().endswith(".py"):
        module = _import_file(Path(module_name), spec)
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConverterLoadError(f"converter {spec!r}: cannot import module {module_name!r}: {exc}",
                                     hint="check the name, or give the file as path/to/file.py:Class") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ConverterLoadError(f"converter {spec!r}: {module_name} has no class {class_name!r}",
                                 hint="check the class name after the ':'")
    if not isinstance(cls, type) or not callable(getattr(cls, "convert", None)):
        raise ConverterLoadError(f"converter {spec!r}: {class_name} is not a converter class",
                                 hint="a converter is a class with a convert(source, context) method")
    _loaded[spec] = cls
    return cls


def _import_file(path: Path, spec: str) -> Any:
    if not path.is_file():
        raise ConverterLoadError(f"converter {spec!r}: file {path} does not exist",
                                 hint="paths in the config are relative to the config file's folder")
    digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:12]
    name = f"stationflow_converter_{digest}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ConverterLoadError(f"converter {spec!r}: {path} cannot be loaded as Python")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ConverterLoadError(f"converter {spec!r}: loading {path} failed: {type(exc).__name__}: {exc}") from exc
    return module


def converter_name(cls: type, spec: str) -> str:
    """The name used in report ids and messages: the class's ``name``, else the spec."""
    name = getattr(cls, "name", "") or ""
    return name if isinstance(name, str) and name else spec


def converter_patterns(cls: type) -> list[str]:
    patterns = getattr(cls, "patterns", None) or ("*",)
    if isinstance(patterns, str):
        patterns = (patterns,)
    return [str(p) for p in patterns]


# --------------------------------------------------------------------------------- finishing

def deterministic_id(sha256: str, converter: str, index: int) -> str:
    """The id of a report that had none: the same file, converter and position give the same id."""
    return str(uuid.uuid5(ID_NAMESPACE, f"{sha256}/{converter}/{index}"))


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _stamp(report: dict[str, Any], context: ConvertContext, sha256: str, converter: str, index: int) -> None:
    if _missing(report.get("id")):
        report["id"] = deterministic_id(sha256, converter, index)
    for key, attr in STAMPED.items():
        value = getattr(context, attr)
        if _missing(report.get(key)) and not _missing(value):
            report[key] = value


def _serialise(report: dict[str, Any]) -> bytes:
    try:
        return json.dumps(report, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except ValueError as exc:
        raise ConversionError(f"the report holds a value JSON cannot carry (NaN or infinity): {exc}") from None
    except TypeError as exc:
        raise ConversionError(f"the report holds a value that is not JSON data: {exc}") from None


def finish_reports(items: Iterable[dict[str, Any] | bytes], context: ConvertContext, *, sha256: str,
                   converter: str, max_reports: int = 100_000, keys: list[str] | None = None) -> list[bytes]:
    """Stamp, give ids, serialise once and validate every report; raise before returning any.
    ``keys``, if given, receives each report's canonical id (so the spool need not parse it again).

    A ``bytes`` item that already satisfies the server is returned untouched (the fast path for
    WSJF input); otherwise it is parsed, stamped and written again.
    """
    out: list[bytes] = []
    problems: list[str] = []
    for index, item in enumerate(items):
        if index >= max_reports:
            raise ConversionError(f"the converter produced more than {max_reports} reports from one file")
        label = f"report #{index + 1}"
        try:
            raw, key = _finish_one(item, context, sha256, converter, index)
            out.append(raw)
            if keys is not None:
                keys.append(key)
        except ReportValidationError as exc:
            problems.extend(f"{label}: {p}" for p in (exc.problems or [exc.message]))
        except ConversionError as exc:
            problems.append(f"{label}: {exc.message}")
    if problems:
        first = problems[0]
        more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
        detail = "; ".join(problems[:20]) if len(problems) > 1 else None
        raise ConversionError(f"invalid report: {first}{more}", detail=detail)
    if not out:
        raise ConversionError("the converter produced no report from this file")
    return out


def _finish_one(item: dict[str, Any] | bytes, context: ConvertContext, sha256: str, converter: str,
                index: int) -> tuple[bytes, str]:
    if isinstance(item, (bytes, bytearray, memoryview)):
        raw = bytes(item)
        try:
            return raw, parse_header(raw).key
        except ReportValidationError as exc:
            try:
                data = json.loads(raw)
            except ValueError:
                raise exc from None
            if not isinstance(data, dict):
                raise exc from None
            item = data
    if not isinstance(item, dict):
        raise ConversionError(f"the converter yielded a {type(item).__name__}, not a report dict")
    report = dict(item)
    _stamp(report, context, sha256, converter, index)
    raw = _serialise(report)
    try:
        key = parse_header(raw).key
    except ReportValidationError as exc:
        problems = []
        for problem in exc.problems or [exc.message]:
            field_name = problem.split(":", 1)[0]
            if field_name in _STAMP_HINT and "missing" in problem:
                problem += f" (set {_STAMP_HINT[field_name]} in the config to stamp it)"
            problems.append(problem)
        raise ReportValidationError(exc.message, problems) from None
    return raw, key
