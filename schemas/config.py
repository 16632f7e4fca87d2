"""The station config: what a station watches, where it uploads, and how hard it tries.

Pure pydantic models, no I/O. Field names are a contract (other tools write the file), and the
Tk configurator renders its forms from the JSON Schema, so every field carries a description,
its bounds and its default. Unknown keys are refused everywhere: a misspelt key that is silently
ignored is a setting a person believes in that does nothing.

Rule errors raised here are ``PydanticCustomError("config_rule", message, {"at": suffix})``:
``at`` extends the error's location (``".move_to"``, ``"[2].name"``) so the one-line problem
names the field a person must change, not the section that holds it.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    SecretStr,
    field_serializer,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

#: How a secret looks wherever the config is shown (CLI, logs, the control protocol).
MASK = "********"



def masked_url(url: str) -> str:
    """``url`` with a password written into it (``http://admin:pw@host``) shown as the mask: what a
    person reads (``config show``, status, logs, the connection test) never carries it."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None or "@" not in parts.netloc:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{hostport}"))


#: Converters that ship with stationflow; anything else must be a ``path.py:Class`` / ``module:Class`` spec.
BUILTIN_CONVERTERS = ("wsjf", "wsxf", "csv", "atml", "wstf")

#: Post-actions on a source file once all its reports are safely in the spool.
AfterAction = Literal["archive", "move", "delete", "keep"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


def rule_error(message: str, *, at: str = "", value: Any = None) -> PydanticCustomError:
    """A config rule broken; ``at`` is appended to the error location (e.g. ``".move_to"``)."""
    context: dict[str, Any] = {"at": at}
    if value is not None:
        context["value"] = value
    # The message goes through str.format with the context: escape braces a person may have typed.
    return PydanticCustomError("config_rule", message.replace("{", "{{").replace("}", "}}"), context)


# --------------------------------------------------------------------------------------------
# Byte sizes
# --------------------------------------------------------------------------------------------

_UNITS: dict[str, int] = {
    "": 1, "b": 1,
    "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12, "tb": 10**12,
    "ki": 2**10, "kib": 2**10, "mi": 2**20, "mib": 2**20, "gi": 2**30, "gib": 2**30, "ti": 2**40, "tib": 2**40,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([a-z]*)\s*$", re.IGNORECASE)
_SIZE_HELP = "must be a size such as 500MB, 10GB, 1.5GiB (KB/MB/GB = 1000s, KiB/MiB/GiB = 1024s) or a number of bytes"
_CANONICAL = (("TB", 10**12), ("TiB", 2**40), ("GB", 10**9), ("GiB", 2**30), ("MB", 10**6), ("MiB", 2**20),
              ("KB", 10**3), ("KiB", 2**10))


class ByteSize(int):
    """A number of bytes that remembers how it was written ("10GB" stays "10GB" when saved).

    It is an ``int`` everywhere the engine uses it; equality is by value, so ``"1GB"`` and
    ``1000000000`` compare equal and a load → save → load round trip gives an equal model.
    """

    text: str | None

    def __new__(cls, value: int, text: str | None = None) -> ByteSize:
        obj = super().__new__(cls, value)
        obj.text = text
        return obj

    @classmethod
    def parse(cls, value: Any) -> ByteSize:
        """Accept ``123``, ``"123"``, ``"500MB"``, ``"1.5 GiB"``; refuse anything else with a clear error."""
        if isinstance(value, ByteSize):
            return value
        if isinstance(value, bool):
            raise PydanticCustomError("byte_size", _SIZE_HELP)
        if isinstance(value, int):
            if value < 0:
                raise PydanticCustomError("byte_size", "must not be negative")
            return cls(value)
        if isinstance(value, float):
            if not math.isfinite(value) or not value.is_integer() or value < 0:
                raise PydanticCustomError("byte_size", _SIZE_HELP)
            return cls(int(value))
        if not isinstance(value, str):
            raise PydanticCustomError("byte_size", _SIZE_HELP)
        match = _SIZE_RE.match(value)
        if not match or match.group(2).lower() not in _UNITS:
            raise PydanticCustomError("byte_size", _SIZE_HELP)
        try:
            number = Decimal(match.group(1)) * _UNITS[match.group(2).lower()]
        except InvalidOperation:  # pragma: no cover - the regex only lets decimals through
            raise PydanticCustomError("byte_size", _SIZE_HELP) from None
        if number != number.to_integral_value():
            raise PydanticCustomError("byte_size", "must be a whole number of bytes")
        return cls(int(number), value.strip())

    def human(self) -> str:
        """The form to show or save: as written, else the shortest exact unit form ("10GB")."""
        if self.text is not None:
            return self.text
        return format_bytes(int(self))

    def serialise(self) -> int | str:
        """What goes back into the file: the string as written, or the plain integer."""
        return self.text if self.text is not None else int(self)

    def __repr__(self) -> str:
        return f"ByteSize({int(self)}{', ' + repr(self.text) if self.text is not None else ''})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (ByteSize, (int(self), self.text))

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            cls.parse,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda v: v.serialise() if isinstance(v, ByteSize) else v, when_used="always"),
        )

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: core_schema.CoreSchema,
                                     handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        return {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?|\.\d+)\s*([kKmMgGtT][iI]?)?[bB]?\s*$"},
            ],
            "examples": ["500MB", "10GB", "1.5GiB", 1048576],
        }


def format_bytes(n: int) -> str:
    """Shortest exact unit form: 10_000_000_000 → "10GB", 1_610_612_736 → "1536MiB", 1001 → "1001"."""
    if n == 0:
        return "0"
    for unit, size in _CANONICAL:
        if n % size == 0:
            return f"{n // size}{unit}"
    return str(n)


def _at_least(minimum: int) -> Any:
    """A byte-size bound with our own message (the generic ``ge`` is not applied to custom types)."""
    def check(value: ByteSize) -> ByteSize:
        if value < minimum:
            raise PydanticCustomError("byte_size", "must be at least {minimum} byte(s)", {"minimum": minimum})
        return value

    return AfterValidator(check)


#: A size of 1 byte or more (a zero limit would refuse everything).
PositiveSize = Annotated[ByteSize, _at_least(1), Field(json_schema_extra={"minimum": 1})]
#: A size where 0 is meaningful (e.g. no free-disk floor).
Size = ByteSize

Name = Annotated[str, Field(min_length=1, max_length=100)]


class _Section(BaseModel):
    """Strict everywhere: no unknown keys, no quietly coerced "30" or ``yes`` for a number."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, validate_assignment=True)


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------

class StationSection(_Section):
    """Who this station is; stamped into reports that do not say it themselves."""

    name: Name = Field(description="Station name, stamped as machineName into reports that lack one.",
                       examples=["STATION-01"])
    location: str | None = Field(default=None, description="Where the station stands (free text, e.g. 'Line 1').")
    purpose: str | None = Field(default=None, description="What the station is used for (e.g. 'Production').")


class ServerSection(_Section):
    """The WATS server this station uploads to."""

    url: str = Field(description="Address of the WATS server, http:// or https://, e.g. https://wats.example.com.",
                     examples=["https://wats.example.com", "http://127.0.0.1:8080"])
    token: SecretStr | None = Field(
        default=None,
        description="Access token as issued by the WATS server (already base64); sent as 'Basic <token>'. "
                    "Kept secret: shown as ******** everywhere.",
    )
    verify_tls: bool = Field(default=True, description="Check the server's TLS certificate (https). "
                                                       "Turn off only for testing.")
    ca_bundle: str | None = Field(default=None, description="PEM file of the certificate authority that signed "
                                                            "the server's certificate, for servers behind an "
                                                            "internal CA. Relative to the config file's folder.")
    timeout_s: float = Field(default=30.0, gt=0, le=600, description="Seconds to wait for the server's answer "
                                                                      "(read timeout).")
    connect_timeout_s: float = Field(default=10.0, gt=0, le=300, description="Seconds to wait for a connection "
                                                                              "to the server.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        """A plain str (no URL object surprises), but one httpx can use: http(s), a host, no spaces."""
        text = value.strip()
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise rule_error("must be an http:// or https:// address with a valid port") from None
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname or any(c.isspace() for c in text):
            raise rule_error("must be an http:// or https:// address, e.g. https://wats.example.com")
        if parts.query or parts.fragment:
            raise rule_error("must not have a ?query or #fragment — give the server's base address")
        return text.rstrip("/")

    @field_serializer("url")
    def _mask_url(self, url: str, info: Any) -> str:
        """A password in the URL is masked like the token, unless the caller asks (saving the file)."""
        if isinstance(info.context, dict) and info.context.get("reveal_secrets"):
            return url
        return masked_url(url)

    @field_serializer("token")
    def _mask_token(self, token: SecretStr | None, info: Any) -> str | None:
        """Masked unless the caller asks for the real value (only when saving the file)."""
        if token is None:
            return None
        if isinstance(info.context, dict) and info.context.get("reveal_secrets"):
            return token.get_secret_value()
        return MASK

    @field_validator("token")
    @classmethod
    def _token_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise rule_error("must not be empty — remove the key if there is no token")
        if value is not None:
            # It goes into an HTTP header: anything else (a typographic quote pasted with it) would
            # make every upload fail with an encoding error instead of this message.
            odd = next((i for i, c in enumerate(value.get_secret_value().strip()) if not 32 < ord(c) < 127), None)
            if odd is not None:
                raise rule_error(f"must be the token as issued by the WATS server, in plain ASCII letters, digits "
                                 f"and symbols (character {odd + 1} is not; a quote or space pasted with it?)")
        return value


class IntakeSection(_Section):
    """One watched folder: which files to pick up, how to convert them, what to do with them after."""

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")] = Field(
        description="Unique name of this intake (letters, digits, '.', '_', '-'); used in folder names and logs.",
        examples=["ict-json"])
    watch: Annotated[str, Field(min_length=1)] = Field(
        description="Folder the test equipment writes into. Relative to the config file's folder.")
    patterns: Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)] = Field(
        default_factory=lambda: ["*"], description="File name patterns to pick up (glob, e.g. '*.json').")
    recursive: bool = Field(default=False, description="Also watch the folders inside the watch folder.")
    follow_links: Literal["never", "inside"] = Field(
        default="never",
        description="Symbolic links in the watch folder: never (ignored, with a note in status) or inside "
                    "(followed when the file or folder they point to is inside the watch folder; the file itself "
                    "is taken, archived or deleted, the link is left). A link out of the folder is never followed.")
    converter: str = Field(
        description="How to turn a file into reports: a built-in (wsjf, wsxf, csv, atml, wstf) or a custom converter as "
                    "'path/to/file.py:ClassName' or 'module:ClassName'.",
        examples=["wsjf", "wsxf", "csv", "atml", "wstf", "converters/my_tester.py:MyTesterConverter"])
    settle_ms: int = Field(default=1000, ge=0, le=3_600_000,
                           description="A file is picked up once it has not changed for this many milliseconds.")
    settle_on_close: bool = Field(
        default=True,
        description="Take a file as soon as its writer closed it after writing (Linux), or it can be opened "
                    "exclusively (Windows), without waiting settle_ms. Set false for equipment that closes and "
                    "reopens a file while it is still writing it.")
    after: AfterAction = Field(
        default="archive",
        description="What to do with the source file once all its reports are safely in the spool: archive "
                    "(into data_dir), move (to move_to), delete, or keep (leave it; it is remembered as done).")
    move_to: str | None = Field(default=None, description="Folder to move source files into; required when after "
                                                          "is 'move'. Relative to the config file's folder.")
    max_file_bytes: PositiveSize = Field(default=ByteSize.parse("50MB"),
                                         description="Larger files are not converted: they go to the error folder "
                                                     "(<data_dir>/rejected/<intake>/) with the reason.")
    timeout_s: float = Field(default=60.0, gt=0, le=3600, description="Seconds one file's conversion may take.")
    arguments: dict[str, Any] = Field(default_factory=dict,
                                      description="Settings passed to the converter as they are.")

    @field_validator("converter")
    @classmethod
    def _converter_spec(cls, value: str) -> str:
        text = value.strip()
        if text in BUILTIN_CONVERTERS:
            return text
        module, sep, cls_name = text.rpartition(":")
        if not sep:
            raise rule_error(f"must be one of {', '.join(BUILTIN_CONVERTERS)}, "
                             "or a custom converter as 'path/to/file.py:ClassName' or 'module:ClassName'")
        if not module.strip() or not cls_name.isidentifier():
            raise rule_error("a custom converter is 'path/to/file.py:ClassName' or 'module:ClassName'")
        return text

    @model_validator(mode="after")
    def _move_needs_target(self) -> IntakeSection:
        if self.after == "move" and not (self.move_to and self.move_to.strip()):
            raise rule_error("required when after is 'move' — set the folder to move source files into",
                             at=".move_to")
        if self.after != "move" and self.move_to is not None:
            raise rule_error(f"only used when after is 'move' (after is '{self.after}') — "
                             "set after: move or remove move_to", at=".move_to", value=self.move_to)
        return self


class RetrySection(_Section):
    """Backoff between attempts to send a report that failed for a passing reason."""

    initial_s: float = Field(default=1.0, gt=0, le=3600, description="Seconds to wait after the first failure.")
    max_s: float = Field(default=300.0, gt=0, le=86400, description="Longest wait between two attempts, in seconds.")
    multiplier: float = Field(default=2.0, ge=1, le=10, description="Each wait is the previous one times this.")
    jitter: float = Field(default=0.2, ge=0, le=1,
                          description="Random spread of each wait, as a fraction (0.2 = ±20%).")
    offline_after: int = Field(default=5, ge=1, le=1000,
                               description="Consecutive failures after which the server counts as offline.")

    @model_validator(mode="after")
    def _max_not_below_initial(self) -> RetrySection:
        if self.max_s < self.initial_s:
            raise rule_error(f"must be at least initial_s ({self.initial_s:g})", at=".max_s", value=self.max_s)
        return self


class UploadSection(_Section):
    """How reports leave the spool for the server."""

    concurrency: int = Field(default=4, ge=1, le=64, description="Reports sent at the same time.")
    rate_per_s: float | None = Field(default=100.0, gt=0, le=100_000,
                                     description="Most reports sent per second; null (empty) means unlimited.")
    retry: RetrySection = Field(default_factory=RetrySection, description="Backoff after a failed attempt.")


class SpoolSection(_Section):
    """Limits of the local spool. A full spool refuses new work; it never drops a report."""

    max_reports: int = Field(default=100_000, ge=1, le=1_000_000_000, description="Most reports kept waiting (not yet sent).")
    max_bytes: PositiveSize = Field(default=ByteSize.parse("10GB"),
                                    description="Most bytes of reports kept waiting, e.g. 10GB.")
    min_free_disk: Size = Field(default=ByteSize.parse("500MB"),
                                description="New work is refused when less disk than this is free (0 = no floor).")
    keep_sent_days: float = Field(default=7.0, ge=0, le=36500,
                                  description="Days a sent report is kept before it is cleaned up (0 = at once).")


class ShutdownSection(_Section):
    """The two-phase stop."""

    grace_s: float = Field(default=60.0, ge=0, le=3600,
                           description="Seconds in-flight work may take to finish when stopping; then it is "
                                       "cancelled (and resumed at the next start).")


class ControlSection(_Section):
    """The control protocol used by the CLI and the configurator (always on 127.0.0.1)."""

    port: int = Field(default=0, ge=0, le=65535,
                      description="TCP port on 127.0.0.1; 0 picks a free port and records it in data_dir.")
    submit_folders: list[str] = Field(
        default_factory=list, max_length=100,
        description="Folders (besides the watch folders) from which `stationflow submit` may have the running "
                    "service read files. Relative to this file's folder.")


class LoggingSection(_Section):
    """The service's log (secrets never reach it)."""

    level: LogLevel = Field(default="INFO", description="Least important messages logged.")
    json_: bool = Field(default=False, alias="json", description="Write one JSON object per line instead of text.")
    file_max_bytes: PositiveSize = Field(default=ByteSize.parse("10MB"),
                                         description="Size at which the log file is rotated.")
    file_backups: int = Field(default=5, ge=0, le=1000, description="Rotated log files kept.")


# --------------------------------------------------------------------------------------------
# The whole file
# --------------------------------------------------------------------------------------------

_SECTION_DEFAULTS: dict[str, Any] = {"intake": list, "upload": dict, "spool": dict, "shutdown": dict,
                                     "control": dict, "logging": dict}


class StationConfig(_Section):
    """A station's config file. Relative paths are relative to the file's folder."""

    station: StationSection = Field(description="Who this station is.")
    server: ServerSection = Field(description="The WATS server to upload to.")
    data_dir: Annotated[str, Field(min_length=1)] = Field(
        default="./stationflow-data",
        description="Folder for the spool, source copies, archive, logs, lock and control token. "
                    "Relative to the config file's folder.")
    intake: list[IntakeSection] = Field(default_factory=list, description="Watched folders.")
    upload: UploadSection = Field(default_factory=UploadSection, description="Sending reports.")
    spool: SpoolSection = Field(default_factory=SpoolSection, description="Limits of the local spool.")
    shutdown: ShutdownSection = Field(default_factory=ShutdownSection, description="Stopping gracefully.")
    control: ControlSection = Field(default_factory=ControlSection, description="The local control protocol.")
    logging: LoggingSection = Field(default_factory=LoggingSection, description="The service's log.")
    lifecycles: Annotated[str, Field(min_length=1)] | None = Field(
        default=None,
        description="Folder of site lifecycles (report.yaml, conversion.yaml, ...): a file there replaces "
                    "the shipped one of the same name, after the same checks (`stationflow machines "
                    "validate`). Relative to the config file's folder.")

    @model_validator(mode="before")
    @classmethod
    def _empty_sections_mean_defaults(cls, data: Any) -> Any:
        """``upload:`` with every line below commented out is YAML null: read it as "all defaults"."""
        if isinstance(data, dict):
            data = {k: (_SECTION_DEFAULTS[k]() if v is None and k in _SECTION_DEFAULTS else v)
                    for k, v in data.items()}
        return data

    @field_validator("intake")
    @classmethod
    def _unique_intake_names(cls, intakes: list[IntakeSection]) -> list[IntakeSection]:
        seen: dict[str, int] = {}
        for index, intake in enumerate(intakes):
            if intake.name in seen:
                raise rule_error(f"intake[{seen[intake.name]}] already has this name; each intake needs its own",
                                 at=f"[{index}].name", value=intake.name)
            seen[intake.name] = index
        return intakes


def section_model(path: tuple[str | int, ...]) -> type[BaseModel] | None:
    """The model that holds the keys at ``path`` (list indexes skipped), or None if it is not a model.

    Used to list the allowed keys next to an unknown one.
    """
    import typing

    model: type[BaseModel] | None = StationConfig
    for part in path:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part)
        if field is None:
            field = next((f for f in model.model_fields.values() if f.alias == part), None)
        if field is None:
            return None
        model = None
        pending = [field.annotation]
        while pending:
            tp = pending.pop()
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                model = tp
                break
            pending.extend(typing.get_args(tp))
    return model


def allowed_keys(model: type[BaseModel]) -> list[str]:
    """The keys a person may write in this section, in file order."""
    return [f.alias or name for name, f in model.model_fields.items()]
