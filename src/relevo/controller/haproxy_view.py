"""HAProxy as the controller sees and drives it: admin state, operational state and sessions per server.

The admin state comes from `show servers state` (a bit field, exact) rather than from `show stat`'s
status words, which mix admin and health ("DRAIN", "MAINT", "DOWN 1/2"); sessions come from `show stat`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from relevo.controller.state import ServerView
from relevo.errors import RuntimeAPIError
from relevo.files import write_atomic
from relevo.haproxy.runtime import AdminState, Health, RuntimeAPI

# srv_admin_state bits (HAProxy's enum srv_admin): forced, inherited, resolution and FQDN maintenance.
# CMAINT (0x04, "disabled in the configuration") is only a memory of the config once it is cleared by
# `state ready`, so it is not one of them.
MAINT_BITS = 0x01 | 0x02 | 0x20 | 0x40
DRAIN_BITS = 0x08 | 0x10
# srv_op_state: 0 stopped, 1 starting, 2 running, 3 stopping.
OP_RUNNING = 2


class BalancerControl(Protocol):
    """What the loop needs from HAProxy (a fake in unit tests). Not `model.Balancer`, the topology's
    description of a balancer node."""

    def view(self) -> Mapping[str, ServerView]:
        """Every server of the backend; raises RuntimeAPIError when HAProxy does not answer."""
        ...

    def set_state(self, server: str, state: AdminState) -> None: ...

    def health_up(self, server: str) -> None: ...

    def save(self) -> None:
        """Persist server states so that an HAProxy restart comes back with them."""
        ...


def parse_servers_state(text: str, backend: str) -> dict[str, tuple[AdminState, bool]]:
    """`show servers state` -> {server: (admin state, operationally up)} for one backend."""
    lines = text.splitlines()
    header = next((line for line in lines if line.startswith("#")), None)
    if header is None:
        raise RuntimeAPIError(f"unexpected `show servers state` answer: {text[:200]!r}")
    columns = header.lstrip("# ").split()
    try:
        be, name, op, admin = (
            columns.index(c) for c in ("be_name", "srv_name", "srv_op_state", "srv_admin_state")
        )
    except ValueError as exc:
        raise RuntimeAPIError(f"unexpected `show servers state` header: {header!r}") from exc
    servers: dict[str, tuple[AdminState, bool]] = {}
    for line in lines:
        fields = line.split()
        if line.startswith("#") or len(fields) <= max(be, name, op, admin) or fields[be] != backend:
            continue
        bits = int(fields[admin])
        state = (
            AdminState.MAINT
            if bits & MAINT_BITS
            else AdminState.DRAIN
            if bits & DRAIN_BITS
            else AdminState.READY
        )
        servers[fields[name]] = (state, int(fields[op]) == OP_RUNNING)
    return servers


class RuntimeBalancer:
    """The `BalancerControl` of a real HAProxy, through its Runtime API."""

    def __init__(self, runtime: RuntimeAPI, backend: str, *, state_file: Path) -> None:
        self.runtime = runtime
        self.backend = backend
        self.state_file = state_file

    def view(self) -> Mapping[str, ServerView]:
        states = parse_servers_state(self.runtime.show_servers_state(), self.backend)
        stats = self.runtime.servers(self.backend)
        return {
            name: ServerView(
                admin=admin,
                up=up,
                sessions=stats[name].current_sessions if name in stats else 0,
            )
            for name, (admin, up) in states.items()
        }

    def set_state(self, server: str, state: AdminState) -> None:
        self.runtime.set_state(self.backend, server, state)

    def health_up(self, server: str) -> None:
        self.runtime.set_health(self.backend, server, Health.UP)

    def save(self) -> None:
        """Dump the server states where a restarted HAProxy reads them (only a whole, valid answer: a
        hung HAProxy leaves the last good dump in place)."""
        text = self.runtime.show_servers_state()
        parse_servers_state(text, self.backend)
        write_atomic(self.state_file, text, mode=0o600)


class PolledBalancer:
    """HAProxy's view read off the tick, by a thread of its own, so that a slow or hung HAProxy never
    holds up decisions about web nodes. Under the seed's load on two cores HAProxy answered the Runtime
    API in 50-300 ms; a hung (SIGSTOPped) one never does.

    `view` asks for a fresh read and waits at most `wait_s` for it; without one it uses the latest read
    if that is younger than `stale_s` and was made after the controller's last command (so a decision
    never rests on a state from before its own change); else HAProxy is "not answering" this tick.
    Commands (set state, health up, save) go straight to HAProxy, each bounded by the socket timeout."""

    def __init__(
        self,
        inner: BalancerControl,
        *,
        wait_s: float,
        stale_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.wait_s = wait_s
        self.stale_s = stale_s
        self.clock = clock
        self._cond = threading.Condition()
        self._wanted = threading.Event()
        self._latest: _Read | None = None
        self._asked: float | None = None
        self._fresh_after = clock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="relevo-haproxy-view", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._closed:
                return
            began = self.clock()
            try:
                read = _Read(began=began, ended=self.clock(), view=self.inner.view())
            except Exception as exc:  # any failure to read HAProxy is "not answering"
                read = _Read(began=began, ended=self.clock(), error=exc)
            with self._cond:
                self._latest = read
                self._cond.notify_all()

    def ask(self) -> None:
        """Start a fresh read now (`view` then waits for it): several balancers read side by side."""
        if self._asked is None:
            self._asked = self.clock()
            self._wanted.set()

    def view(self, *, wait: bool = True) -> Mapping[str, ServerView]:
        """The latest read, waiting up to `wait_s` for one begun now (`wait=False`: the latest there is,
        for a tick that must act at once, a death heard or a standby thawed)."""
        self.ask()
        assert self._asked is not None
        asked, self._asked = self._asked, None
        with self._cond:
            if wait:
                self._cond.wait_for(
                    lambda: self._latest is not None and self._latest.began >= asked, timeout=self.wait_s
                )
            read = self._latest
        now = self.clock()
        if read is None or read.began < self._fresh_after or now - read.ended > self.stale_s:
            raise RuntimeAPIError(f"no answer from HAProxy's Runtime API within {self.stale_s:g} s")
        if read.error is not None:
            raise RuntimeAPIError(str(read.error))
        assert read.view is not None
        return read.view

    def _commanded(self) -> None:
        self._fresh_after = self.clock()

    def set_state(self, server: str, state: AdminState) -> None:
        try:
            self.inner.set_state(server, state)
        finally:
            self._commanded()

    def health_up(self, server: str) -> None:
        try:
            self.inner.health_up(server)
        finally:
            self._commanded()

    def save(self) -> None:
        self.inner.save()

    def close(self) -> None:
        self._closed = True
        self._wanted.set()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Read:
    began: float
    ended: float
    view: Mapping[str, ServerView] | None = None
    error: Exception | None = None
