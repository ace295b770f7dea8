"""The cluster's credentials are made once even when two balancers are created side by side."""

from __future__ import annotations

import contextlib
import secrets as stdlib_secrets
import threading
from pathlib import Path

import pytest

from relevo import secrets


def test_two_first_uses_at_once_get_the_same_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two threads asking for a cluster's credentials before any exist (a pair's balancers created at
    once by `up`) get the same ones: the second waits for the first's file instead of making its own."""
    generating = threading.Barrier(2)
    tokens = iter(["first-token", "second-token"])
    lock = threading.Lock()

    def token(_: int) -> str:
        # Waits (briefly) for the other thread to be generating too: it would be, were both past the
        # "no file yet" check; it never is when the first use is one at a time.
        with contextlib.suppress(threading.BrokenBarrierError):
            generating.wait(timeout=0.3)
        with lock:
            return next(tokens)

    monkeypatch.setattr(stdlib_secrets, "token_urlsafe", token)  # what relevo.secrets draws from
    path = tmp_path / "state" / "secrets.json"
    found: list[secrets.Secrets] = []
    threads = [
        threading.Thread(target=lambda: found.append(secrets.load_or_create_secrets(path))) for _ in "ab"
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(found) == 2 and found[0] == found[1] == secrets.load_or_create_secrets(path)
