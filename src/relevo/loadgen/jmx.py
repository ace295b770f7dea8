"""Read a JMeter test plan (.jmx) into a relevo `Plan`: its thread groups and HTTP samplers.

A .jmx is JMeter's saved test tree: every element is followed by a <hashTree> holding its children, and
configuration (HTTP Request Defaults, HTTP Header Manager, User Defined Variables) applies to the
elements in its scope. relevo runs what decides the load: thread groups (threads, ramp-up, loops or
scheduler duration, startup delay), HTTP samplers (method, protocol/host/port/path, parameters or raw
body, keep-alive, timeouts), simple/transaction/loop controllers (flattened), and a Constant Throughput
Timer (as an open-model rate). What it cannot honour it names in warnings rather than dropping silently.
"""

from __future__ import annotations

import re
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from relevo.loadgen.plan import DEFAULT_TIMEOUT_S, HttpRequest, Plan, PlanError, ThreadGroup, parse_url
from relevo.safe_open import open_binary

SAMPLERS = {"HTTPSamplerProxy", "HTTPSampler", "HTTPSampler2"}
GROUPS = {"ThreadGroup"}
# Elements that change what is recorded or checked, not the load: nothing to warn about.
QUIET = {
    "ResultCollector",
    "ResponseAssertion",
    "DurationAssertion",
    "SizeAssertion",
    "JSONPathAssertion",
    "RegexExtractor",
    "JSONPostProcessor",
    "BoundaryExtractor",
    "CookieManager",
    "CacheManager",
    "DNSCacheManager",
    "AuthManager",
    "TestFragmentController",
}
FLATTENED = {"GenericController", "TransactionController"}
# ${name}, ${__P(name)}, ${__P(name,default)}, ${__property(name,,default)}
_VAR = re.compile(r"\$\{([^}]*)\}")
_PROPERTY_FN = re.compile(r"__(?:P|property)\(\s*([^,)]*)\s*(?:,([^,)]*))?(?:,([^)]*))?\)")

# A loop controller inside a thread group is unrolled into the iteration's list of requests: bounded, so
# that a plan asking for a hundred million never reaches memory.
MAX_SAMPLERS_PER_ITERATION = 100_000


@dataclass(slots=True)
class _Scope:
    """Configuration in force at a point of the tree (copied on the way down, so siblings don't leak)."""

    variables: dict[str, str] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)
    headers: dict[str, tuple[str, str]] = field(default_factory=dict)

    def child(self) -> _Scope:
        return _Scope(dict(self.variables), dict(self.defaults), dict(self.headers))


@dataclass(slots=True)
class _JmxReader:
    path: Path
    warnings: list[str] = field(default_factory=list)

    def fail(self, message: str) -> PlanError:
        return PlanError(f"{self.path}: {message}")

    def warn(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)

    def subst(self, text: str, scope: _Scope) -> str:
        """JMeter's variable references: user defined variables, and properties' defaults."""

        def one(match: re.Match[str]) -> str:
            inner = match.group(1).strip()
            fn = _PROPERTY_FN.fullmatch(inner)
            if fn:
                name, second, third = fn.group(1).strip(), fn.group(2), fn.group(3)
                default = third if third is not None else second
                if default is None:
                    raise self.fail(f"${{{inner}}} reads JMeter property {name!r}, which has no default here")
                return self.subst(default.strip(), scope)
            if inner in scope.variables:
                return scope.variables[inner]
            known = ", ".join(sorted(scope.variables)) or "none"
            raise self.fail(f"unknown variable ${{{inner}}} (user defined variables: {known})")

        return _VAR.sub(one, text)


def prop(element: ET.Element, name: str) -> ET.Element | None:
    for child in element:
        if child.get("name") == name:
            return child
    return None


def text(element: ET.Element, name: str, default: str = "") -> str:
    found = prop(element, name)
    return default if found is None or found.text is None else found.text


def flag(element: ET.Element, name: str, default: bool) -> bool:
    value = text(element, name, "").strip().lower()
    return default if not value else value == "true"


def pairs(tree: ET.Element) -> Iterator[tuple[ET.Element, ET.Element]]:
    """A hashTree's children as (element, its own hashTree)."""
    children = list(tree)
    for i in range(0, len(children) - 1, 2):
        element, subtree = children[i], children[i + 1]
        if subtree.tag == "hashTree":
            yield element, subtree


def arguments(element: ET.Element, name: str) -> list[tuple[str, str]]:
    holder = prop(element, name)
    collection = prop(holder, "Arguments.arguments") if holder is not None else None
    if collection is None:
        return []
    return [(text(arg, "Argument.name"), text(arg, "Argument.value")) for arg in collection]


def read_jmx(path: Path) -> tuple[Plan, list[str]]:
    """The plan in `path`, and warnings about parts of it relevo does not run."""
    reader = _JmxReader(path)
    try:
        # libexpat >= 2.4 (bundled with CPython 3.11) bounds entity expansion; plans are the user's files.
        with open_binary(path) as handle:
            root = ET.parse(handle).getroot()  # noqa: S314
    except OSError as exc:
        raise PlanError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ET.ParseError as exc:
        raise PlanError(f"cannot read {path}: {exc}") from None
    if root.tag != "jmeterTestPlan" or len(root) == 0:
        raise reader.fail("not a JMeter test plan (no <jmeterTestPlan> root)")
    top = list(pairs(root[0]))
    if not top or top[0][0].tag != "TestPlan":
        raise reader.fail("no TestPlan element")
    test_plan, tree = top[0]
    scope = _Scope()
    scope.variables.update(arguments(test_plan, "TestPlan.user_defined_variables"))
    if flag(test_plan, "TestPlan.serialize_threadgroups", False):
        reader.warn(
            "serialize_threadgroups: JMeter runs the groups one after another; relevo runs them at once"
        )
    groups = tuple(_walk_plan(reader, tree, scope))
    if not groups:
        raise reader.fail("no enabled thread group with an HTTP request")
    name = test_plan.get("testname") or path.stem
    return Plan(name=name, groups=groups), reader.warnings


def _configure(reader: _JmxReader, element: ET.Element, scope: _Scope) -> bool:
    """Apply a configuration element to `scope`; False if `element` is not one."""
    if element.tag == "Arguments":
        for name, value in arguments_of_collection(element):
            scope.variables[name] = reader.subst(value, scope)
        return True
    if element.tag == "ConfigTestElement" and element.get("guiclass") == "HttpDefaultsGui":
        for child in element:
            key = child.get("name", "")
            if key.startswith("HTTPSampler.") and child.text:
                scope.defaults[key] = reader.subst(child.text, scope)
        return True
    if element.tag == "HeaderManager":
        headers = prop(element, "HeaderManager.headers")
        for header in headers if headers is not None else ():
            name = reader.subst(text(header, "Header.name"), scope).strip()
            if name:
                scope.headers[name.lower()] = (name, reader.subst(text(header, "Header.value"), scope))
        return True
    return False


def arguments_of_collection(element: ET.Element) -> list[tuple[str, str]]:
    collection = prop(element, "Arguments.arguments")
    if collection is None:
        return []
    return [(text(arg, "Argument.name"), text(arg, "Argument.value")) for arg in collection]


def _walk_plan(reader: _JmxReader, tree: ET.Element, scope: _Scope) -> Iterator[ThreadGroup]:
    # Configuration applies to its whole scope wherever it sits in it, as in JMeter: apply it first.
    enabled = [(e, t) for e, t in pairs(tree) if e.get("enabled", "true") != "false"]
    for element, _ in enabled:
        _configure(reader, element, scope)
    for number, (element, subtree) in enumerate(enabled, start=1):
        if element.tag in GROUPS:
            yield _group(reader, element, subtree, scope.child(), number)
        elif element.tag in {"SetupThreadGroup", "PostThreadGroup"} or element.tag.endswith("ThreadGroup"):
            reader.warn(
                f"{element.tag} {element.get('testname')!r} is not run (only plain Thread Groups are)"
            )
        elif element.tag not in QUIET and not _is_config(element):
            reader.warn(f"{element.tag} {element.get('testname')!r} at the plan's top level is ignored")


def _is_config(element: ET.Element) -> bool:
    return element.tag in {"Arguments", "HeaderManager"} or (
        element.tag == "ConfigTestElement" and element.get("guiclass") == "HttpDefaultsGui"
    )


def _number(reader: _JmxReader, element: ET.Element, name: str, scope: _Scope, default: float) -> float:
    raw = reader.subst(text(element, name, ""), scope).strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise reader.fail(f"{element.get('testname')!r}: {name} is {raw!r}, not a number") from None


def _group(
    reader: _JmxReader, element: ET.Element, tree: ET.Element, scope: _Scope, number: int
) -> ThreadGroup:
    name = element.get("testname") or f"Thread Group {number}"
    threads = int(_number(reader, element, "ThreadGroup.num_threads", scope, 1))
    ramp_up = _number(reader, element, "ThreadGroup.ramp_time", scope, 0)
    controller = prop(element, "ThreadGroup.main_controller")
    loops: int | None = 1
    if controller is not None:
        loops = int(_number(reader, controller, "LoopController.loops", scope, 1))
        if loops < 0:  # JMeter's "infinite": the scheduler's duration ends the group
            loops = None
    duration: float | None = None
    delay = 0.0
    if flag(element, "ThreadGroup.scheduler", False):
        duration = _number(reader, element, "ThreadGroup.duration", scope, 0) or None
        delay = _number(reader, element, "ThreadGroup.delay", scope, 0)
    if loops is None and duration is None:
        raise reader.fail(f"thread group {name!r} loops forever without a scheduler duration")
    rate: list[float] = []
    requests = tuple(_samplers(reader, tree, scope, rate, threads))
    if not requests:
        raise reader.fail(f"thread group {name!r} has no enabled HTTP request")
    rate_rps = rate[0] if rate else None
    if rate_rps is not None and duration is None:
        reader.warn(f"{name!r}: a Constant Throughput Timer needs a scheduler duration; its rate is ignored")
        rate_rps = None
    return ThreadGroup(
        name=name,
        threads=threads,
        ramp_up_s=ramp_up,
        loops=None if rate_rps is not None else loops,
        duration_s=duration,
        delay_s=delay,
        rate_rps=rate_rps,
        requests=requests,
    )


def _samplers(
    reader: _JmxReader, tree: ET.Element, scope: _Scope, rate: list[float], threads: int
) -> Iterator[HttpRequest]:
    enabled = [(e, t) for e, t in pairs(tree) if e.get("enabled", "true") != "false"]
    for element, _ in enabled:
        _configure(reader, element, scope)
    for element, subtree in enabled:
        tag = element.tag
        if tag in SAMPLERS:
            yield _request(reader, element, subtree, scope.child())
        elif tag in FLATTENED:
            yield from _samplers(reader, subtree, scope.child(), rate, threads)
        elif tag == "LoopController":
            times = int(_number(reader, element, "LoopController.loops", scope, 1))
            if times < 0:
                raise reader.fail(f"loop controller {element.get('testname')!r} loops forever")
            inner = list(_samplers(reader, subtree, scope.child(), rate, threads))
            if times * len(inner) > MAX_SAMPLERS_PER_ITERATION:
                raise reader.fail(
                    f"loop controller {element.get('testname')!r}: {times} loops of {len(inner)} requests "
                    f"is more than one iteration can hold: at most {MAX_SAMPLERS_PER_ITERATION} requests "
                    "(use the thread group's loops or a duration)"
                )
            for _ in range(times):
                yield from inner
        elif tag == "ConstantThroughputTimer":
            per_minute = _number(reader, element, "throughput", scope, 0)
            mode = int(_number(reader, element, "calcMode", scope, 0))
            # Mode 0 paces each thread on its own; the others share the target among the threads.
            rate.append(per_minute / 60.0 * (threads if mode == 0 else 1))
        elif tag.endswith("Timer"):
            reader.warn(
                f"timer {element.get('testname')!r} ({tag}) is ignored: relevo sends without think time"
            )
        elif tag not in QUIET and not _is_config(element):
            reader.warn(f"{tag} {element.get('testname')!r} is not supported and is ignored")


def _request(reader: _JmxReader, element: ET.Element, subtree: ET.Element, scope: _Scope) -> HttpRequest:
    for child, _ in pairs(subtree):
        if child.get("enabled", "true") != "false":
            _configure(reader, child, scope)
    label = element.get("testname") or "HTTP Request"

    def get(name: str) -> str:
        own = reader.subst(text(element, f"HTTPSampler.{name}"), scope).strip()
        return own or scope.defaults.get(f"HTTPSampler.{name}", "").strip()

    path = get("path") or "/"
    host, port_text, protocol = get("domain"), get("port"), get("protocol").lower() or "http"
    if path.lower().startswith(("http://", "https://")):
        protocol, host, port, path = parse_url(path)
        port_text = str(port)
    if protocol != "http":
        raise reader.fail(f"{label!r} uses {protocol}://; relevo speaks plain http only")
    if not host:
        raise reader.fail(f"{label!r} names no server (HTTPSampler.domain), nor do HTTP Request Defaults")
    try:
        port = int(port_text) if port_text else 80
    except ValueError:
        raise reader.fail(f"{label!r}: port {port_text!r} is not a number") from None
    if not path.startswith("/"):
        path = "/" + path
    method = (reader.subst(text(element, "HTTPSampler.method", "GET"), scope).strip() or "GET").upper()
    headers = dict(scope.headers)
    args = [
        (reader.subst(n, scope), reader.subst(v, scope))
        for n, v in arguments(element, "HTTPsampler.Arguments")
    ]
    body = b""
    if flag(element, "HTTPSampler.postBodyRaw", False):
        body = "".join(v for _, v in args).encode()
    elif args and method in {"POST", "PUT", "PATCH"}:
        body = urllib.parse.urlencode(args).encode()
        headers.setdefault("content-type", ("Content-Type", "application/x-www-form-urlencoded"))
    elif args:
        path += ("&" if "?" in path else "?") + urllib.parse.urlencode(args)
    timeout_ms = max(
        _number(reader, element, f"HTTPSampler.{k}", scope, 0)
        for k in ("connect_timeout", "response_timeout")
    )
    if not timeout_ms:
        timeout_ms = float(scope.defaults.get("HTTPSampler.response_timeout") or 0)
    if flag(element, "HTTPSampler.follow_redirects", False) or flag(
        element, "HTTPSampler.auto_redirects", False
    ):
        reader.warn(f"{label!r}: redirects are not followed (a 3xx still counts as a success, as in JMeter)")
    return replace(
        HttpRequest(label=label, host=host, port=port),
        method=method,
        path=path,
        headers=tuple(headers.values()),
        body=body,
        keepalive=flag(element, "HTTPSampler.use_keepalive", True),
        timeout_s=timeout_ms / 1000 if timeout_ms > 0 else DEFAULT_TIMEOUT_S,
    )
