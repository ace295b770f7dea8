"""What to send, to whom, how often: a test plan as frozen data, in JMeter's vocabulary.

A `Plan` holds thread groups; a `ThreadGroup` holds HTTP samplers (`HttpRequest`) that each of its virtual
users runs in order, once per loop. Without a rate a group is a closed model, as JMeter's: a user sends
its next request when the previous one has finished. With `rate_rps` it is an open model, as wrk2's:
requests leave at fixed intended times whatever the server does, on at most `threads` connections.
"""

from __future__ import annotations

import dataclasses
import math
import os
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from relevo.errors import RelevoError

DEFAULT_COUNT_HEADER = "X-Served-By"
DEFAULT_TIMEOUT_S = 10.0


class PlanError(RelevoError):
    """A plan, URL or option is wrong: said in the user's own terms."""

    exit_status = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpRequest:
    """One HTTP sampler: a request with its label (the row it lands in in the Summary Report)."""

    label: str
    method: str = "GET"
    scheme: str = "http"
    host: str
    port: int
    path: str = "/"
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    keepalive: bool = True
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = {"http": 80, "https": 443}.get(self.scheme)
        port = "" if self.port == default else f":{self.port}"
        return f"{self.scheme}://{host}{port}{self.path}"


@dataclass(frozen=True, slots=True, kw_only=True)
class ThreadGroup:
    """JMeter's thread group: `threads` users starting over `ramp_up_s`, each running `loops` iterations
    (None: until `duration_s` ends). With `rate_rps` set, an open model instead (see the module doc)."""

    name: str = "Thread Group"
    threads: int = 1
    ramp_up_s: float = 0.0
    loops: int | None = 1
    duration_s: float | None = None
    delay_s: float = 0.0
    rate_rps: float | None = None
    # Closed model: each user waits this long after a sample before its next (JMeter's Constant Timer).
    think_s: float = 0.0
    requests: tuple[HttpRequest, ...]

    def __post_init__(self) -> None:
        validate_group(self)

    @property
    def total_samples(self) -> int | None:
        """How many samples the group sends when that is fixed in advance (None when time decides)."""
        if self.rate_rps is not None and self.duration_s is not None:
            return math.ceil(self.rate_rps * self.duration_s - 1e-9)
        if self.duration_s is None and self.loops is not None:
            return self.threads * self.loops * len(self.requests)
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """Thread groups that run side by side (JMeter's default; no `serialize_threadgroups`)."""

    name: str = "relevo"
    groups: tuple[ThreadGroup, ...]
    # The response header whose value is counted per label ("which server answered"); "" for none.
    count_header: str = DEFAULT_COUNT_HEADER

    def __post_init__(self) -> None:
        if not self.groups:
            raise PlanError("the plan has no thread group with an HTTP request in it")

    @property
    def labels(self) -> tuple[str, ...]:
        """Every label, in the order the plan first names it (the Summary Report's row order)."""
        seen: dict[str, None] = {}
        for group in self.groups:
            for request in group.requests:
                seen.setdefault(request.label, None)
        return tuple(seen)

    @property
    def total_samples(self) -> int | None:
        counts = [g.total_samples for g in self.groups]
        return None if any(c is None for c in counts) else sum(c for c in counts if c is not None)

    @property
    def duration_s(self) -> float | None:
        """The longest a group may run by the clock (None if some group is bounded by loops only)."""
        ends = [g.delay_s + g.duration_s for g in self.groups if g.duration_s is not None]
        return max(ends) if len(ends) == len(self.groups) else None


def validate_group(group: ThreadGroup) -> None:
    where = f"thread group {group.name!r}"
    if not group.requests:
        raise PlanError(f"{where} has no HTTP request")
    if group.threads < 1:
        raise PlanError(f"{where}: threads must be at least 1, not {group.threads}")
    check_capacity(group, where)
    if group.ramp_up_s < 0 or group.delay_s < 0 or group.think_s < 0:
        raise PlanError(f"{where}: ramp-up, delay and think time cannot be negative")
    if group.loops is not None and group.loops < 1:
        raise PlanError(f"{where}: loops must be at least 1, not {group.loops}")
    if group.duration_s is not None and not group.duration_s > 0:
        raise PlanError(f"{where}: the duration must be positive")
    if group.loops is None and group.duration_s is None:
        raise PlanError(f"{where} loops forever: give it a duration")
    if group.rate_rps is not None:
        if not group.rate_rps > 0:
            raise PlanError(f"{where}: the rate must be positive")
        if group.duration_s is None:
            raise PlanError(f"{where}: a rate needs a duration (how long to hold it)")
    for request in group.requests:
        if request.scheme != "http":
            raise PlanError(f"{request.label!r}: only http:// targets are supported, not {request.scheme}://")
        if not request.timeout_s > 0:
            raise PlanError(f"{request.label!r}: the timeout must be positive")


def parse_url(url: str) -> tuple[str, str, int, str]:
    """Split an http URL into (scheme, host, port, path with query); a bare host:port is taken as http."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urllib.parse.urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme != "http":
        raise PlanError(f"{url!r}: only http:// URLs are supported (relevo's targets are plain HTTP)")
    if not parts.hostname:
        raise PlanError(f"{url!r} has no host")
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise PlanError(f"{url!r}: {exc}") from None
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    return scheme, parts.hostname, port, path


def with_target(plan: Plan, target: str) -> Plan:
    """The same plan with every request sent to `target`'s host and port (and path, if it names one)."""
    scheme, host, port, path = parse_url(target)
    keep_path = urllib.parse.urlsplit(target if "://" in target else "http://" + target).path in ("", "/")

    def retarget(request: HttpRequest) -> HttpRequest:
        return dataclasses.replace(
            request, scheme=scheme, host=host, port=port, path=request.path if keep_path else path
        )

    groups = tuple(
        dataclasses.replace(g, requests=tuple(retarget(r) for r in g.requests)) for g in plan.groups
    )
    return dataclasses.replace(plan, groups=groups)


def simple_plan(
    url: str,
    *,
    threads: int = 100,
    loops: int | None = 1,
    duration_s: float | None = None,
    ramp_up_s: float = 0.0,
    rate_rps: float | None = None,
    method: str = "GET",
    headers: tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    timeout_s: float = DEFAULT_TIMEOUT_S,
    keepalive: bool = True,
    count_header: str = DEFAULT_COUNT_HEADER,
    label: str | None = None,
    think_s: float = 0.0,
) -> Plan:
    """One thread group sending one request: what `relevo bench URL` runs.

    Closed model unless `rate_rps` is given; `loops` None means "until `duration_s` ends" (with both,
    whichever comes first).
    """
    scheme, host, port, path = parse_url(url)
    method = method.upper()
    request = HttpRequest(
        label=label or f"{method} {path}",
        method=method,
        scheme=scheme,
        host=host,
        port=port,
        path=path,
        headers=headers,
        body=body,
        keepalive=keepalive,
        timeout_s=timeout_s,
    )
    group = ThreadGroup(
        name="relevo",
        threads=threads,
        ramp_up_s=ramp_up_s,
        loops=None if rate_rps is not None else loops,
        duration_s=duration_s,
        rate_rps=rate_rps,
        think_s=think_s,
        requests=(request,),
    )
    return Plan(groups=(group,), count_header=count_header)


# -- what this machine can hold ---------------------------------------------------------------------------
# Each virtual user holds a connection (a file descriptor in one worker process) and its state in memory;
# this is a generous bound on that state, so the limit refuses only what could never run.
BYTES_PER_USER = 64 * 1024
# Loops beyond this never end in practice (a billion requests per user); use a duration instead.
MAX_LOOPS = 1_000_000_000
# The open model's rate no worker process could ever send (one measured ~13k req/s a core here): a rate
# above cores x this is refused, not attempted (the requests it could not send would pile up).
MAX_RATE_PER_WORKER = 1_000_000


def max_threads() -> tuple[int, str]:
    """The most virtual users this machine can hold, and what sets that limit (for the error)."""
    import resource

    cores = os.cpu_count() or 1
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    fds = hard * cores if hard != resource.RLIM_INFINITY else 1 << 30
    limits = [(fds, f"{cores} worker processes x {hard} open files each (ulimit -Hn)")]
    available = _memory_available()
    if available is not None:
        limits.append((available // BYTES_PER_USER, f"{available >> 20} MiB of available memory"))
    return min(limits)


def _memory_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_capacity(group: ThreadGroup, where: str) -> None:
    """Threads, the open model's rate and loops capped at what the machine can hold, the limit named in
    the error (before any memory is spent on them)."""
    most, why = max_threads()
    if group.threads > most:
        raise PlanError(
            f"{where}: {group.threads} threads is more than this machine can hold: at most {most} ({why})"
        )
    if group.rate_rps is not None:
        cores = os.cpu_count() or 1
        if group.rate_rps > cores * MAX_RATE_PER_WORKER:
            raise PlanError(
                f"{where}: a rate of {group.rate_rps:g} requests per second is more than this machine can "
                f"send: at most {cores * MAX_RATE_PER_WORKER} ({cores} worker processes x "
                f"{MAX_RATE_PER_WORKER} each)"
            )
    if group.loops is not None and group.loops > MAX_LOOPS:
        raise PlanError(
            f"{where}: {group.loops} loops is more than a run can hold: at most {MAX_LOOPS} per thread; "
            "bound the run with a duration instead"
        )
