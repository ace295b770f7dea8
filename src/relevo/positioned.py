"""Positioned YAML: the one way relevo reads its YAML files (the topology, scenario files).

The YAML is composed into nodes rather than loaded into dicts, so each value keeps its line and column
and a duplicate key is an error instead of a silent overwrite. `PositionedReader` converts one value
where it stands (a mapping with known keys, a bounded integer, a duration, a safe name, an address...);
each file format composes one and adds its own sections. Every error is the format's error type naming
the file, the line and column, and what was expected (exit status 2).
"""

from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml

from relevo.errors import TopologyError
from relevo.grammar import DURATION_EXAMPLES, did_you_mean, parse_duration
from relevo.safe_open import NotRegularFileError, open_regular

# Names reach file paths, HAProxy server names and container names: keep them to a safe alphabet.
NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,30}$")
# A relevo YAML file is a few kilobytes; anything near this is not one (and must not fill memory).
MAX_BYTES = 1 << 20
SHOWN_CHARS = 60

E = TypeVar("E", bound=Any)


def compose_yaml(
    text: str, *, source: Path | None, error: type[TopologyError] = TopologyError
) -> yaml.Node | None:
    """`text` composed into YAML nodes (which keep their line and column for every later error); bad
    YAML is an `error` naming the place, never a traceback. The one YAML entry point of every relevo file
    format (the topology, scenario files)."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise error(
            f"not valid YAML: {cut(str(exc.problem))}",
            path=source,
            line=mark.line + 1 if mark else 0,
            column=mark.column + 1 if mark else 0,
        ) from None
    except yaml.YAMLError as exc:
        raise error(f"not valid YAML: {cut(str(exc))}", path=source) from None
    except RecursionError:
        raise error("not valid YAML: nested too deeply", path=source) from None


class PositionedReader:
    """Converts composed YAML values where they stand, so every error carries its position."""

    def __init__(self, source: Path | None, *, error: type[TopologyError] = TopologyError) -> None:
        self.source = source
        self.error = error
        # Resolves a scalar's tag (int, bool, str...) the way yaml.safe_load would.
        self.constructor = yaml.SafeLoader("")

    def fail(self, node: yaml.Node, message: str) -> TopologyError:
        """The error to raise for `node`: this reader's error type, naming the file, line and column."""
        mark = node.start_mark
        return self.error(message, path=self.source, line=mark.line + 1, column=mark.column + 1)

    def mapping(self, node: yaml.Node, where: str, allowed: set[str]) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{where}: expected a mapping of keys to values")
        out: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                raise self.fail(key_node, f"{where}: expected a plain key")
            if key in out:
                raise self.fail(key_node, f"{where}: duplicate key {shown(key)}")
            if key not in allowed:
                known = ", ".join(sorted(allowed))
                hint = did_you_mean(key[:64], allowed)  # a long key is no near miss: compare its start
                raise self.fail(
                    key_node, f"{where}: unknown key {shown(key)}{hint}; expected one of: {known}"
                )
            out[key] = value_node
        return out

    def scalar(self, node: yaml.Node, where: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, f"{where}: expected a single value, not a list or mapping")
        try:
            return self.constructor.construct_object(node)
        except yaml.YAMLError as exc:  # an unknown tag (`!!1s`), a malformed timestamp, ...
            problem = getattr(exc, "problem", None) or "cannot read this value"
            raise self.fail(node, f"{where}: {cut(str(problem))}") from None
        except ValueError:  # int() refuses more than sys.get_int_max_str_digits() digits (4,300)
            raise self.fail(
                node, f"{where}: a number of {len(node.value)} characters is too long to be a value here"
            ) from None

    def integer(self, node: yaml.Node, where: str, *, low: int, high: int) -> int:
        value = self.scalar(node, where)
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.fail(
                node, f"{where}: expected a whole number from {low} to {high}, got {shown(node.value)}"
            )
        return value

    def boolean(self, node: yaml.Node, where: str) -> bool:
        value = self.scalar(node, where)
        if not isinstance(value, bool):
            raise self.fail(node, f"{where}: expected true or false, got {shown(node.value)}")
        return value

    def string(self, node: yaml.Node, where: str) -> str:
        value = self.scalar(node, where)
        if not isinstance(value, str) or not value:
            raise self.fail(node, f"{where}: expected text, got {shown(node.value)}")
        return value

    def name(self, node: yaml.Node, where: str) -> str:
        value = self.scalar(node, where)
        if not isinstance(value, str) or not NAME_RE.match(value):
            raise self.fail(
                node,
                f"{where}: {shown(node.value)} is not a safe name; expected a lowercase letter, then up "
                "to 30 lowercase letters, digits, '-' or '_'",
            )
        return value

    def duration(self, node: yaml.Node, where: str, *, low_s: float = 0.001, high_s: float = 3600.0) -> float:
        value = self.scalar(node, where)
        try:
            seconds: float | None = parse_duration(value)
        except ValueError:
            seconds = None
        if seconds is None or not low_s <= seconds <= high_s:
            raise self.fail(
                node,
                f"{where}: expected a duration such as {DURATION_EXAMPLES}, from {low_s:g}s to "
                f"{high_s:g}s, got {shown(node.value)}",
            )
        return seconds

    def choice(self, node: yaml.Node, where: str, enum_type: type[E]) -> E:
        value = self.scalar(node, where)
        try:
            member: E = enum_type(value)
        except ValueError:
            known = ", ".join(option.value for option in enum_type)
            raise self.fail(node, f"{where}: expected one of {known}, got {shown(node.value)}") from None
        return member

    def address(self, node: yaml.Node, where: str) -> str:
        value = self.string(node, where)
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise self.fail(
                node, f"{where}: expected an IP address such as 127.0.0.1, got {shown(value)}"
            ) from None

    def port(self, node: yaml.Node, where: str) -> int:
        return self.integer(node, where, low=1, high=65535)


def read_yaml_text(
    path: Path,
    *,
    what: str,
    missing: str,
    error: type[TopologyError] = TopologyError,
    max_bytes: int = MAX_BYTES,
) -> str:
    """The file's text: a regular file (never a device or a FIFO, which could block or never end), at
    most `max_bytes`, valid UTF-8; each refusal an `error` naming the file."""
    try:
        fd = open_regular(path)
    except FileNotFoundError:
        raise error(missing, path=path) from None
    except NotRegularFileError as exc:
        raise error(f"{exc.strerror}; expected YAML", path=path) from None
    except OSError as exc:
        raise error(f"cannot read it: {exc.strerror}", path=path) from None
    try:
        info = os.fstat(fd)
        if info.st_size > max_bytes:
            raise error(f"{info.st_size} bytes is too large for {what} (at most {max_bytes})", path=path)
        data = os.read(fd, max_bytes + 1)
    except OSError as exc:
        raise error(f"cannot read it: {exc.strerror}", path=path) from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise error(f"too large for {what} (at most {max_bytes} bytes)", path=path)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise error(
            f"not UTF-8 text: byte 0x{data[exc.start]:02x} cannot start or continue a character",
            path=path,
            line=line,
            column=column,
        ) from None


def cut(text: str, limit: int = SHOWN_CHARS) -> str:
    """`text` as a message shows it: at most `limit` characters, and says how long it really was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


def shown(value: object) -> str:
    """repr(value) cut for a message."""
    return cut(repr(value))
