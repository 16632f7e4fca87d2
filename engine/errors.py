"""One exception hierarchy: a short message for the person at the station, plus the detail.

Every error carries an ``exit_code`` so the CLI can map it to the documented code without
guessing, and a ``hint`` that says what to do next.
"""

from __future__ import annotations


class StationflowError(Exception):
    """Base class. ``str(err)`` is the one-line message a person reads."""

    exit_code: int = 1

    def __init__(self, message: str, *, hint: str | None = None, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class ConfigError(StationflowError):
    """The station config is missing or invalid; ``problems`` lists one line per field."""

    exit_code = 3

    def __init__(self, message: str, *, problems: list[str] | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.problems = problems or []


class InvalidInput(StationflowError):
    """A report file, machine YAML or other input is malformed. Nothing stored was changed."""

    exit_code = 4


class InvalidReport(InvalidInput):
    """A report does not satisfy what the WATS server requires."""


class MachineDefinitionError(InvalidInput):
    """A lifecycle YAML is malformed or breaks an invariant; ``problems`` names each one."""

    def __init__(self, message: str, *, problems: list[str] | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.problems = problems or []


class SpoolFull(StationflowError):
    """The spool refuses new work (count, bytes or free-disk floor). Sources stay where they are."""

    exit_code = 5


class ReportNotFound(StationflowError):
    exit_code = 6


class IllegalTransition(StationflowError):
    """A trigger that the lifecycle does not allow from the report's current state."""

    exit_code = 4


class DuplicateReport(InvalidInput):
    """A different report with the same id is already in the spool."""


class ServiceNotRunning(StationflowError):
    exit_code = 7


class AlreadyRunning(StationflowError):
    exit_code = 8


class StorageError(StationflowError):
    """A write, fsync or rename failed. The operation did not happen; nothing was assumed."""

    exit_code = 9


class IncompatibleSpool(StorageError):
    """The spool was written by a newer stationflow, in a format this version does not know."""

    exit_code = 9
