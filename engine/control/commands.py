"""What each control command does, in terms of the running service.

``build_handlers(service)`` gives the control server one async handler per command in
``schemas.control.COMMANDS``. Each handler validates its arguments against that schema first
(a wrong argument is a ``bad_args`` answer naming the field), does blocking spool and file work in
worker threads (with a small limiter of its own, so a busy CLI cannot starve the uploader's
threads), and raises ``StationflowError`` for anything a person must hear about.

Changing the config goes one way only: validated → saved atomically with a backup → reloaded.
``config.get`` masks the token; a config sent back with the mask in place keeps the stored token.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import anyio
from pydantic import BaseModel, ValidationError

from ..convert.api import BUILTIN
from ..config_file import (
    config_dict,
    config_warnings,
    load_config,
    resolved,
    save_config,
    validate_config_data,
)
from ..health import health_of
from ..station_access import rejected_counts
from .server import AfterReply, BadArguments, Handler, error_code, problems_of
from ..errors import ConfigError, InvalidInput, ReportNotFound, StationflowError
from ...schemas.config import MASK, StationConfig, masked_url
from ...schemas.control import (
    COMMANDS,
    ConfigDataArgs,
    IntakePauseArgs,
    LogTailArgs,
    NoArgs,
    QueueFireArgs,
    QueueListArgs,
    QueueRetryArgs,
    QueueShowArgs,
    SubmitArgs,
)

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R")
_RETRY_NOTE = "retried by an operator (control protocol)"

if TYPE_CHECKING:
    from ..intake import Intake
    from ..service.intake_process import IntakeProcess
    from ..service.logs import LogRing
    from ..spool.store import Spool


class ControlledService(Protocol):
    """What the control commands need of the running service (``service.Service``), and no more:
    the commands are written against this, so a test can stand in for the service."""

    config: StationConfig
    config_path: Path
    spool: Spool | None
    intake: Intake | IntakeProcess | None
    log_ring: LogRing

    @property
    def state(self) -> str: ...

    def status(self) -> dict[str, Any]: ...

    async def reload(self, source: str = ...) -> list[str]: ...

    def request_stop(self, reason: str) -> None: ...


def build_handlers(service: ControlledService) -> dict[str, Handler]:
    """One handler per command for ``ControlServer``; ``service`` is the running ``Service``."""
    commands = _Commands(service)
    table: dict[str, Callable[[Any], Awaitable[Any]]] = {
        "status": commands.status,
        "metrics": commands.metrics,
        "queue.list": commands.queue_list,
        "queue.show": commands.queue_show,
        "queue.retry": commands.queue_retry,
        "queue.retry_failed": commands.queue_retry_failed,
        "queue.fire": commands.queue_fire,
        "intake.pause": commands.intake_pause,
        "intake.resume": commands.intake_resume,
        "upload.resume": commands.upload_resume,
        "config.get": commands.config_get,
        "config.validate": commands.config_validate,
        "config.apply": commands.config_apply,
        "reload": commands.reload,
        "stop": commands.stop,
        "log.tail": commands.log_tail,
        "submit": commands.submit,
    }
    assert set(table) == set(COMMANDS), "schemas.control.COMMANDS and the handlers disagree"
    return {name: _validated(name, COMMANDS[name][0], fn) for name, fn in table.items()}


def _validated(name: str, model: type[M], fn: Callable[[M], Awaitable[Any]]) -> Handler:
    fields = ", ".join(model.model_fields) or "no arguments"

    async def handler(args: dict[str, Any]) -> Any:
        try:
            parsed = model.model_validate(args)
        except ValidationError as exc:
            raise BadArguments(f"bad arguments for {name}", problems=problems_of(exc),
                               hint=f"{name} takes: {fields}") from None
        return await fn(parsed)

    handler.__name__ = f"control_{name.replace('.', '_')}"
    return handler


class _Commands:
    def __init__(self, service: ControlledService) -> None:
        self.service = service
        self.limiter = anyio.CapacityLimiter(4)
        self.config_lock = anyio.Lock()

    async def _thread(self, fn: Callable[..., R], *args: Any) -> R:
        return await anyio.to_thread.run_sync(partial(fn, *args), limiter=self.limiter)

    def _spool(self) -> Spool:
        spool = self.service.spool
        if spool is None:
            raise StationflowError(f"the spool is not open (the service is {self.service.state})",
                                   hint="wait for the service to finish starting, or see its log")
        return spool

    # ------------------------------------------------------------------ reading

    async def status(self, _: NoArgs) -> Any:
        """The service's status, the files waiting in the error folders, and the health judged from both."""
        status = dict(self.service.status())
        config = getattr(self.service, "config", None)
        if config is not None:
            status["rejected_files"] = await self._thread(rejected_counts, config)
        status["health"] = health_of(status)
        return status

    async def metrics(self, _: NoArgs) -> Any:
        return self.service.status().get("metrics", {})

    async def queue_list(self, a: QueueListArgs) -> dict[str, Any]:
        spool = self._spool()
        if a.state is not None and a.state not in spool.lifecycle.states:
            raise InvalidInput(f"unknown state {a.state!r}", hint=f"one of {', '.join(spool.lifecycle.states)}")

        def page() -> dict[str, Any]:
            keys = spool.keys(a.state)
            rows = []
            for key in keys[a.offset:a.offset + a.limit]:
                try:
                    rows.append(spool.info(key).as_dict())
                except ReportNotFound:  # pruned between the listing and now
                    continue
            return {"total": len(keys), "offset": a.offset, "reports": rows}

        return await self._thread(page)

    async def queue_show(self, a: QueueShowArgs) -> dict[str, Any]:
        info = await self._thread(self._spool().info, a.id)
        return {**info.as_dict(), "history": info.history}

    # ------------------------------------------------------------------ acting on reports

    async def submit(self, a: SubmitArgs) -> dict[str, Any]:
        """``stationflow submit`` while the service owns the spool: the same conversion, done here."""

        from ..intake import submit_files

        spool = self._spool()
        config = self.service.config
        spec, arguments, timeout = _submit_converter(config, a.converter)
        relative = [p for p in a.paths if not os.path.isabs(p)]
        if relative:
            raise InvalidInput(f"submit needs absolute paths (got {relative[0]!r})",
                               hint="the service may run in another folder than the command")
        paths = [_allowed_submit_path(config, p) for p in a.paths]
        results = await submit_files(paths, spool, config.station, converter=spec,
                                     arguments=arguments, timeout_s=timeout)
        return {"results": [{"path": r.path, "accepted": [list(t) for t in r.accepted], "error": r.error,
                             "detail": r.detail} for r in results]}

    async def queue_retry(self, a: QueueRetryArgs) -> dict[str, Any]:
        return await self._thread(self._retry, self._spool(), list(a.ids))

    async def queue_retry_failed(self, _: NoArgs) -> dict[str, Any]:
        spool = self._spool()
        return await self._thread(lambda: self._retry(spool, spool.keys(spool.roles.refused)))

    @staticmethod
    def _retry(spool: Any, ids: list[str]) -> dict[str, Any]:
        """Each report on its own: one that cannot be retried does not stop the others."""
        results = []
        for key in ids:
            try:
                state = spool.fire_operator(key, "retry", note=_RETRY_NOTE)
                results.append({"id": key, "ok": True, "state": state})
            except StationflowError as exc:
                results.append({"id": key, "ok": False, "code": error_code(exc), "error": str(exc)})
        retried = sum(1 for r in results if r["ok"])
        return {"retried": retried, "refused": len(results) - retried, "results": results}

    async def queue_fire(self, a: QueueFireArgs) -> dict[str, Any]:
        spool = self._spool()
        answer: dict[str, Any] = await self._thread(fire_operator_trigger, spool, a.trigger, list(a.ids))
        return answer

    # ------------------------------------------------------------------ intake

    def _intake(self) -> Intake | IntakeProcess:
        intake = self.service.intake
        if intake is None:
            raise StationflowError("no intake is running on this station",
                                   hint="add a watched folder under intake: in the station config")
        return intake

    async def intake_pause(self, a: IntakePauseArgs) -> dict[str, Any]:
        intake = self._intake()
        intake.pause(a.reason or "paused through the control protocol")
        return intake.status()

    async def intake_resume(self, _: NoArgs) -> dict[str, Any]:
        intake = self._intake()
        intake.resume()
        return intake.status()

    async def upload_resume(self, _: NoArgs) -> dict[str, Any]:
        uploader = getattr(self.service, "uploader", None)
        if uploader is None:
            raise StationflowError("the uploader is not running", hint="start the service with `stationflow run`")
        resumed = uploader.resume()
        return {"resumed": resumed, **uploader.status()}

    # ------------------------------------------------------------------ config

    def _stored(self) -> tuple[StationConfig, str, list[str]]:
        """The config a person edits: the file as written if it is valid, else what the service runs."""
        try:
            return load_config(self.service.config_path), "file", []
        except ConfigError as exc:
            return self.service.config, "running", [exc.message, *exc.problems]

    async def config_get(self, _: NoArgs) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            cfg, source, problems = self._stored()
            warnings = config_warnings(resolved(cfg, self.service.config_path)) if source == "file" else []
            return {"path": str(self.service.config_path), "source": source, "config": config_dict(cfg),
                    "problems": problems, "warnings": warnings}

        return await self._thread(read)

    def _unmask(self, data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Put the stored token back where the client sent the mask it got from ``config.get`` (and
        the stored URL, when its password came back masked)."""
        server = data.get("server")
        if isinstance(server, dict) and isinstance(server.get("url"), str) and MASK in server["url"]:
            stored_url = self._stored()[0].server.url
            if masked_url(stored_url) == server["url"]:
                data = copy.deepcopy(data)
                server = data["server"]
                server["url"] = stored_url
        if not isinstance(server, dict) or server.get("token") != MASK:
            return data, []
        stored = self._stored()[0].server.token
        if stored is None:
            return data, [f"server.token: {MASK} is the masked placeholder, and no token is stored to keep — "
                          "type the token, or remove the key"]
        data = copy.deepcopy(data)
        data["server"]["token"] = stored.get_secret_value()
        return data, []

    def _check(self, data: dict[str, Any]) -> StationConfig:
        data, problems = self._unmask(data)
        if problems:
            raise ConfigError("the station config is not valid (1 problem)", problems=problems,
                              hint="fix the fields listed")
        return validate_config_data(data)

    async def config_validate(self, a: ConfigDataArgs) -> dict[str, Any]:
        def check() -> dict[str, Any]:
            try:
                cfg = self._check(a.data)
            except ConfigError as exc:
                return {"valid": False, "problems": exc.problems or [exc.message], "warnings": []}
            return {"valid": True, "problems": [],
                    "warnings": config_warnings(resolved(cfg, self.service.config_path))}

        return await self._thread(check)

    async def config_apply(self, a: ConfigDataArgs) -> dict[str, Any]:
        path = self.service.config_path
        async with self.config_lock:
            cfg = await self._thread(self._check, a.data)
            # Saved and reloaded as one step: a timeout or a dropped client must not leave it half done.
            with anyio.CancelScope(shield=True):
                await self._thread(save_config, cfg, path)
                try:
                    changes = await self.service.reload("control")
                except ConfigError as exc:
                    raise ConfigError(f"{path} was saved, but the service refused to reload it: {exc.message}; "
                                      "the old settings stay in force", problems=exc.problems,
                                      hint=f"fix the fields listed and apply again (the previous file is "
                                           f"{path}.bak)") from None
        return {"saved": str(path), "backup": f"{path}.bak", "changes": list(changes or [])}

    async def reload(self, _: NoArgs) -> dict[str, Any]:
        async with self.config_lock:
            with anyio.CancelScope(shield=True):
                changes = await self.service.reload("control")
        return {"changes": list(changes or [])}

    # ------------------------------------------------------------------ the service

    async def stop(self, _: NoArgs) -> AfterReply:
        """Answered first, then the stop begins (the answer must not race the shutdown)."""
        grace = self.service.config.shutdown.grace_s
        return AfterReply({"stopping": True, "pid": os.getpid(), "grace_s": grace},
                          partial(self.service.request_stop, "stop requested through the control protocol"))

    async def log_tail(self, a: LogTailArgs) -> dict[str, Any]:
        return {"lines": list(self.service.log_ring.tail(a.n))}


# ------------------------------------------------------------------ what a control client may ask for

def _submit_converter(config: StationConfig, name: str) -> tuple[str, dict[str, Any], float]:
    """(converter spec, arguments, timeout) for ``submit`` through the protocol. Only converters the
    config names: a built-in, or an intake (by its name or its converter). A client never names a
    file of code for the service to run — whoever can write the token could then run code as the
    service's user."""
    by_name = {intake.name: intake for intake in config.intake}
    if name in by_name:
        section = by_name[name]
        return section.converter, dict(section.arguments), section.timeout_s
    for section in config.intake:
        if section.converter == name:
            return section.converter, dict(section.arguments), section.timeout_s
    if name in BUILTIN:
        return name, {}, 60.0
    known = sorted({*BUILTIN, *by_name})
    raise InvalidInput(f"the service converts only with converters its config names, not {name!r}",
                       hint=f"use one of {', '.join(known)}; a custom converter must be named in an intake "
                            "of the station config")


def _allowed_submit_path(config: StationConfig, raw: str) -> Path:
    """A file the service may read for ``submit``: inside a watch folder or a ``control.submit_folders``
    folder, after following every link (a link in an allowed folder to a secret elsewhere is refused)."""
    real = Path(os.path.realpath(raw))
    folders = [*(intake.watch for intake in config.intake), *config.control.submit_folders]
    for folder in folders:
        root = Path(os.path.realpath(folder))
        if real == root or root in real.parents:
            return real
    raise InvalidInput(f"the service reads files for submit only from its watch folders and "
                       f"control.submit_folders, not {raw}",
                       hint="copy the file into a watch folder, or add its folder to control.submit_folders in "
                            "the station config (or stop the service: `stationflow submit` then reads it itself)")


def fire_operator_trigger(spool: Any, trigger: str, ids: list[str]) -> dict[str, Any]:
    """``queue fire``: each report on its own (one refused does not stop the others); only a
    ``by: operator`` transition from the report's state is allowed."""
    results = []
    for key in ids:
        try:
            state = spool.fire_operator(key, trigger, note=f"{trigger} by an operator")
            results.append({"id": key, "ok": True, "state": state})
        except StationflowError as exc:
            results.append({"id": key, "ok": False, "code": error_code(exc), "error": str(exc)})
    fired = sum(1 for r in results if r["ok"])
    return {"fired": fired, "refused": len(results) - fired, "results": results}
