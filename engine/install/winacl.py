"""Secrets on Windows: the token and config files, and the data dir, readable by the service only.

POSIX file modes (0600) mean nothing on Windows: a new file takes its ACL from the folder, and
under ``C:\\ProgramData`` or a station's own folder that usually lets every local user read it —
the control token (full control of the service) and the server token with it. So on Windows the
files are cut off from their folder's ACL (``/inheritance:r``) and granted to SYSTEM,
Administrators and the account that writes them (the service account, or the admin running the
command); the data dir the same way, inherited by everything created in it.

``icacls`` ships with every Windows; the well-known groups are named by SID (``*S-1-5-18``),
because their names are translated ("Administratoren"). The current account's SID comes from the
process token through ctypes — no pywin32.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import StorageError

__all__ = ["SYSTEM", "ADMINISTRATORS", "icacls_command", "restrict", "current_user_sid", "account_grant"]

SYSTEM = "*S-1-5-18"
ADMINISTRATORS = "*S-1-5-32-544"
_WELL_KNOWN = {"localsystem": SYSTEM, "system": SYSTEM, r"nt authority\system": SYSTEM,
               "localservice": "*S-1-5-19", r"nt authority\localservice": "*S-1-5-19",
               "networkservice": "*S-1-5-20", r"nt authority\networkservice": "*S-1-5-20"}

Runner = Callable[[list[str]], "subprocess.CompletedProcess[str]"]


def account_grant(account: str) -> str:
    """An account as icacls takes it: a well-known one by SID, a SID as ``*S-...``, a name as it is."""
    lowered = account.lower()
    if lowered in _WELL_KNOWN:
        return _WELL_KNOWN[lowered]
    if account.upper().startswith("S-1-"):
        return f"*{account}"
    return account


def icacls_command(path: str | os.PathLike[str], accounts: Sequence[str], *, directory: bool) -> list[str]:
    """``icacls PATH /inheritance:r /grant:r SID:F ...``: only these accounts, full control; on a
    folder inherited by files and folders created in it (``(OI)(CI)``)."""
    inherit = "(OI)(CI)" if directory else ""
    grants: list[str] = []
    for account in (SYSTEM, ADMINISTRATORS, *(account_grant(a) for a in accounts)):
        grant = f"{account}:{inherit}F"
        if grant not in grants:
            grants.append(grant)
    return ["icacls", str(path), "/inheritance:r", "/grant:r", *grants, "/Q"]


def restrict(path: str | os.PathLike[str], accounts: Sequence[str] | None = None, *,
             run: Runner | None = None, platform: str = sys.platform) -> list[str] | None:
    """On Windows, restrict ``path`` to SYSTEM, Administrators and ``accounts`` (default: the
    account running this process); returns the command run. Elsewhere nothing (file modes apply).

    Raises StorageError when icacls refuses: a secret that may be readable by others is an error
    the person must see, not a warning in a log.
    """
    if platform != "win32":
        return None
    if accounts is None:
        accounts = [f"*{current_user_sid()}"]
    command = icacls_command(path, accounts, directory=Path(path).is_dir())
    done = (run or _run)(command)
    if done.returncode != 0:
        said = (done.stdout or "").strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        raise StorageError(f"cannot restrict who may read {path}: icacls said: {said[0]}",
                           hint="run the command as an administrator, or check the folder's owner")
    return command


def _run(command: list[str]) -> subprocess.CompletedProcess[str]:
    flags = getattr(subprocess, "CREATE_NO_WINDOW", 0)
    return subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          errors="replace", creationflags=flags)


def current_user_sid() -> str:
    """The SID (``S-1-5-21-...``) of the account this process runs as, from its access token."""
    import ctypes
    from ctypes import wintypes

    windll: Callable[..., object] = getattr(ctypes, "WinDLL")
    advapi32: object = windll("advapi32", use_last_error=True)
    kernel32: object = windll("kernel32", use_last_error=True)
    get_current_process = getattr(kernel32, "GetCurrentProcess")
    get_current_process.restype = wintypes.HANDLE
    open_token = getattr(advapi32, "OpenProcessToken")
    open_token.argtypes = [wintypes.HANDLE, wintypes.DWORD, ctypes.POINTER(wintypes.HANDLE)]
    open_token.restype = wintypes.BOOL
    token_info = getattr(advapi32, "GetTokenInformation")
    token_info.argtypes = [wintypes.HANDLE, ctypes.c_int, ctypes.c_void_p, wintypes.DWORD,
                           ctypes.POINTER(wintypes.DWORD)]
    token_info.restype = wintypes.BOOL
    to_string = getattr(advapi32, "ConvertSidToStringSidW")
    to_string.argtypes = [ctypes.c_void_p, ctypes.POINTER(wintypes.LPWSTR)]
    to_string.restype = wintypes.BOOL
    local_free = getattr(kernel32, "LocalFree")
    close_handle = getattr(kernel32, "CloseHandle")
    token_query, token_user = 0x0008, 1

    def fail(what: str) -> OSError:
        return OSError(f"{what} failed (Windows error {getattr(ctypes, 'get_last_error')()})")

    token = wintypes.HANDLE()
    if not open_token(get_current_process(), token_query, ctypes.byref(token)):
        raise fail("OpenProcessToken")
    try:
        size = wintypes.DWORD()
        token_info(token, token_user, None, 0, ctypes.byref(size))
        buffer = ctypes.create_string_buffer(size.value)
        if not token_info(token, token_user, buffer, size, ctypes.byref(size)):
            raise fail("GetTokenInformation")
        sid = ctypes.cast(buffer, ctypes.POINTER(ctypes.c_void_p))[0]  # TOKEN_USER starts with the PSID
        text = wintypes.LPWSTR()
        if not to_string(sid, ctypes.byref(text)):
            raise fail("ConvertSidToStringSidW")
        try:
            return str(text.value)
        finally:
            local_free(text)
    finally:
        close_handle(token)
