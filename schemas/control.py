"""The control protocol's messages: what the CLI and the configurator say to the running service.

Framing (one JSON object per line, UTF-8, at most ``MAX_LINE`` bytes) and the rules of the
conversation live in ``engine/control_server.py``; this module only describes the shapes, so the
client, the server and the README agree on one definition. No I/O here.

A conversation::

    client: {"protocol": 1, "token": "..."}                       # Hello, first line, always
    server: {"id": null, "ok": true, "result": {"protocol": 1, "server": "stationflow", ...}}
    client: {"id": 1, "command": "queue.show", "args": {"id": "83ac0b8e-..."}}
    server: {"id": 1, "ok": true, "result": {...}}
    client: {"id": 2, "command": "queue.show", "args": {"id": "nope"}}
    server: {"id": 2, "ok": false, "error": {"code": "report_not_found", "message": "...", ...}}
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

#: Bumped whenever a message shape changes incompatibly; client and service must agree.
PROTOCOL_VERSION = 1
#: Largest line (one message, newline excluded) the service reads; longer ones close the connection.
MAX_LINE = 1024 * 1024

RequestId = Annotated[StrictInt, Field(ge=-(2**53), le=2**53)] | Annotated[str, Field(max_length=64)]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Hello(_Message):
    """The first line a client sends: which protocol it speaks and the token from the data dir."""

    protocol: StrictInt = Field(description="Control protocol version the client speaks.")
    token: Annotated[str, Field(max_length=512)] | None = Field(
        default=None, description="Contents of <data_dir>/control.token (fresh at every service start).")
    client: Annotated[str, Field(max_length=200)] | None = Field(
        default=None, description="Who is asking (e.g. 'stationflow-cli'); only for the service's log.")


class Request(_Message):
    """One command. ``id`` is echoed in the response, so a client may send several before reading."""

    id: RequestId = Field(description="Chosen by the client; echoed in the response.")
    command: Annotated[str, Field(min_length=1, max_length=64)] = Field(description="e.g. 'queue.list'.")
    args: dict[str, Any] = Field(default_factory=dict, description="The command's arguments, by name.")


class ErrorInfo(_Message):
    """Why a request (or the connection) was refused, in words a person can act on."""

    code: str = Field(description="Stable machine-readable reason, e.g. 'unauthorized', 'report_not_found'.")
    message: str = Field(description="One line for the person.")
    problems: list[str] = Field(default_factory=list, description="One line per field, for config errors.")
    hint: str | None = Field(default=None, description="What to do next.")
    exit_code: int | None = Field(default=None, description="The CLI exit code that matches this error.")


class Response(_Message):
    """Every line the service sends. ``id`` is null for answers to the hello and to unreadable lines."""

    id: RequestId | None = None
    ok: bool
    result: Any = None
    error: ErrorInfo | None = None

    @model_validator(mode="after")
    def _error_iff_not_ok(self) -> Response:
        if self.ok == (self.error is not None):
            raise ValueError("a response has an error exactly when ok is false")
        return self


# ------------------------------------------------------------------------------------------
# Connection-level error codes (command errors add the engine's own, e.g. report_not_found)
# ------------------------------------------------------------------------------------------

BAD_HELLO = "bad_hello"              # first line is not a Hello; connection closed
UNAUTHORIZED = "unauthorized"        # wrong or missing token; connection closed
PROTOCOL_MISMATCH = "protocol_version"  # client speaks another version; connection closed
TOO_LARGE = "too_large"              # line over the limit; connection closed
TIMEOUT = "timeout"                  # line not completed in time (idle/slow client); connection closed
BUSY = "busy"                        # too many connections; connection closed, try again shortly
TOO_MANY_ERRORS = "too_many_errors"  # too many unreadable messages in a row; connection closed
BAD_JSON = "bad_json"                # line is not UTF-8 JSON; connection stays open
BAD_REQUEST = "bad_request"          # JSON, but not a Request; connection stays open
UNKNOWN_COMMAND = "unknown_command"  # connection stays open
BAD_ARGS = "bad_args"                # arguments do not fit the command; connection stays open
REQUEST_TIMEOUT = "request_timeout"  # the command took longer than the per-request limit
INTERNAL = "internal"                # a bug in the service; logged there with its traceback

#: Codes after which the service closes the connection.
CLOSING_CODES = frozenset({BAD_HELLO, UNAUTHORIZED, PROTOCOL_MISMATCH, TOO_LARGE, TIMEOUT, BUSY, TOO_MANY_ERRORS})


# ------------------------------------------------------------------------------------------
# Command arguments
# ------------------------------------------------------------------------------------------

ReportId = Annotated[str, Field(min_length=1, max_length=200)]


class NoArgs(_Message):
    """Commands without arguments refuse any (a typo'd argument silently ignored is a surprise)."""


class QueueListArgs(_Message):
    state: Annotated[str, Field(max_length=64)] | None = Field(default=None, description="Only this state.")
    offset: Annotated[StrictInt, Field(ge=0)] = Field(default=0, description="Skip this many reports.")
    limit: Annotated[StrictInt, Field(ge=1, le=10_000)] = Field(default=1000, description="At most this many.")


class QueueShowArgs(_Message):
    id: ReportId


class QueueRetryArgs(_Message):
    ids: Annotated[list[ReportId], Field(min_length=1, max_length=10_000)]


class QueueFireArgs(_Message):
    trigger: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)] = Field(
        description="An operator trigger of the report lifecycle in force (by: operator), e.g. approve.")
    ids: Annotated[list[ReportId], Field(min_length=1, max_length=10_000)]


class IntakePauseArgs(_Message):
    reason: Annotated[str, Field(max_length=500)] | None = None


class ConfigDataArgs(_Message):
    data: dict[str, Any] = Field(description="The whole station config as a mapping (as in the YAML file).")


class SubmitArgs(_Message):
    paths: Annotated[list[Annotated[str, Field(min_length=1, max_length=4096)]],
                     Field(min_length=1, max_length=1000)] = Field(
        description="Absolute paths of the files, as the service's user can read them.")
    converter: Annotated[str, Field(min_length=1, max_length=500)] = Field(
        default="wsjf", description="A built-in converter, 'file.py:Class', 'module:Class' or an intake's name.")


class LogTailArgs(_Message):
    n: Annotated[StrictInt, Field(ge=1, le=10_000)] = 100


#: Every command the service answers, with its argument model and what it does (for help and docs).
COMMANDS: dict[str, tuple[type[BaseModel], str]] = {
    "status": (NoArgs, "service, tasks, report counts per state, uploader, intake, metrics"),
    "metrics": (NoArgs, "counters and gauges (sent, retried, failed, latency percentiles, ...)"),
    "queue.list": (QueueListArgs, "reports, optionally of one state, a page at a time"),
    "queue.show": (QueueShowArgs, "everything about one report, with its history"),
    "queue.retry": (QueueRetryArgs, "send failed or quarantined reports again"),
    "queue.retry_failed": (NoArgs, "send every failed report again"),
    "queue.fire": (QueueFireArgs, "fire an operator trigger (by: operator) of the report lifecycle on reports"),
    "intake.pause": (IntakePauseArgs, "stop picking up new files (reports already taken go on)"),
    "intake.resume": (NoArgs, "pick up files again"),
    "upload.resume": (NoArgs, "lift a pause of the uploads once its cause is fixed: probe the server, then send"),
    "config.get": (NoArgs, "the config file's settings, token masked"),
    "config.validate": (ConfigDataArgs, "check a config without saving it"),
    "config.apply": (ConfigDataArgs, "validate, save atomically (old file kept as .bak), reload"),
    "reload": (NoArgs, "read the config file again; an invalid file is refused, old settings stay"),
    "stop": (NoArgs, "graceful two-phase stop; answered before the service starts stopping"),
    "log.tail": (LogTailArgs, "the last n lines of the service's log"),
    "submit": (SubmitArgs, "convert files and accept their reports into the spool (the files are not touched)"),
}


def error_code_for(class_name: str) -> str:
    """``ReportNotFound`` → ``report_not_found``: how an engine error is named on the wire."""
    out = []
    for i, ch in enumerate(class_name):
        if ch.isupper() and i:
            out.append("_")
        out.append(ch.lower())
    return "".join(out)
