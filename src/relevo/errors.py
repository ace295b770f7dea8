"""The errors relevo raises on purpose: each one is a message for a person, never a traceback."""

from __future__ import annotations

from pathlib import Path


class RelevoError(Exception):
    """Base of every error the CLI turns into a clean message and an exit status."""

    exit_status = 1


class TopologyError(RelevoError):
    """A topology file is wrong: names the file, line and column, and what was expected."""

    exit_status = 2

    def __init__(self, message: str, *, path: Path | None = None, line: int = 0, column: int = 0) -> None:
        self.path = path
        self.line = line
        self.column = column
        self.reason = message
        where = str(path) if path is not None else "<topology>"
        if line:
            where = f"{where}:{line}:{column}"
        super().__init__(f"{where}: {message}")


class ProviderError(RelevoError):
    """A provider could not do what it was asked: carries the command and the tail of its output."""

    def __init__(self, message: str, *, command: list[str] | None = None, output: str = "") -> None:
        self.command = command
        self.output = output
        text = message
        if command:
            text += f"\n  command: {' '.join(command)}"
        if output:
            tail = "\n".join(output.strip().splitlines()[-12:])
            text += "\n  output:\n    " + tail.replace("\n", "\n    ")
        super().__init__(text)


class MissingToolError(ProviderError):
    """A program relevo drives (haproxy, apache2) is not installed; says how to install it."""


class RuntimeAPIError(RelevoError):
    """HAProxy's Runtime API refused a command or could not be reached."""
