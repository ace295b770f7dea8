"""Generated credentials for HAProxy's stats GUI, stored in the state directory with mode 0600."""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import os
import secrets as random_tokens
import stat
import threading
from dataclasses import asdict, dataclass
from pathlib import Path

from relevo.errors import RelevoError
from relevo.files import UnsafeStateError, ensure_dir, open_nofollow, write_atomic


@dataclass(frozen=True, slots=True, kw_only=True)
class Secrets:
    stats_user: str
    stats_password: str


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, created with that mode (never readable, even briefly)."""
    ensure_dir(path.parent)
    write_atomic(path, text, mode=0o600)


# `relevo up` creates a pair's balancers side by side: both would generate credentials, and one file win.
_FIRST_USE = threading.Lock()


def load_or_create_secrets(path: Path) -> Secrets:
    """The cluster's credentials: generated on first use, the same ones ever after."""
    with _FIRST_USE:
        return _load_or_create(path)


def _load_or_create(path: Path) -> Secrets:
    if os.path.lexists(path):
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            raise UnsafeStateError(f"{path} is not a file of yours; remove it to generate new credentials")
        if info.st_mode & 0o077:
            raise RelevoError(f"{path} is readable by others; run `chmod 600 {path}` (it holds passwords)")
        try:
            data = json.loads(open_nofollow(path, limit=64 * 1024))
            return Secrets(stats_user=str(data["stats_user"]), stats_password=str(data["stats_password"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RelevoError(f"{path} is damaged ({exc}); delete it to generate new credentials") from None
    # token_urlsafe's alphabet needs no quoting in haproxy.cfg nor in a URL.
    created = Secrets(stats_user="admin", stats_password=random_tokens.token_urlsafe(18))
    write_private(path, json.dumps(asdict(created), indent=2) + "\n")
    return created


def authorized(header: str, user: str, password: str) -> bool:
    """An HTTP Basic `Authorization` header naming exactly these credentials (compared in constant time)."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    given_user, _, given_password = given.partition(":")
    return hmac.compare_digest(given_user.encode(), user.encode()) & hmac.compare_digest(
        given_password.encode(), password.encode()
    )
