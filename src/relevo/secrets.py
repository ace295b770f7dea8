"""Generated credentials for HAProxy's stats GUI, stored in the state directory with mode 0600."""

from __future__ import annotations

import json
import secrets as random_tokens
from dataclasses import asdict, dataclass
from pathlib import Path

from relevo.errors import RelevoError
from relevo.files import write_atomic


@dataclass(frozen=True, slots=True, kw_only=True)
class Secrets:
    stats_user: str
    stats_password: str


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, created with that mode (never readable, even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, text, mode=0o600)


def load_or_create_secrets(path: Path) -> Secrets:
    """The cluster's credentials: generated on first use, the same ones ever after."""
    if path.exists():
        if path.stat().st_mode & 0o077:
            raise RelevoError(f"{path} is readable by others; run `chmod 600 {path}` (it holds passwords)")
        try:
            data = json.loads(path.read_text())
            return Secrets(stats_user=str(data["stats_user"]), stats_password=str(data["stats_password"]))
        except (ValueError, KeyError) as exc:
            raise RelevoError(f"{path} is damaged ({exc}); delete it to generate new credentials") from None
    # token_urlsafe's alphabet needs no quoting in haproxy.cfg nor in a URL.
    created = Secrets(stats_user="admin", stats_password=random_tokens.token_urlsafe(18))
    write_private(path, json.dumps(asdict(created), indent=2) + "\n")
    return created
