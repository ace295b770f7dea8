"""Files relevo reads on a user's word are regular files: a FIFO, directory or device is refused at once
with a clear message and exit status 2, never opened to block on a writer that never comes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from relevo.safe_open import NotRegularFileError, open_binary, open_regular, read_bytes


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["report", "{fifo}"], "cannot read {fifo}: not a regular file (a FIFO)"),
        (["bench", "--plan", "{fifo}"], "cannot read {fifo}: not a regular file (a FIFO)"),
        (
            ["bench", "http://127.102.0.9:9/", "--data-file", "{fifo}"],
            "--data-file {fifo}: not a regular file (a FIFO)",
        ),
        (["-f", "{fifo}", "status"], "{fifo}: not a regular file (a FIFO); expected YAML"),
        (["scenarios", "--scenario-file", "{fifo}", "--list"], "{fifo}: not a regular file (a FIFO)"),
    ],
)
def test_a_fifo_is_refused_not_waited_on(tmp_path: Path, fifo: Path, args: list[str], said: str):
    """`relevo report FIFO`, `bench --plan FIFO`, `--data-file FIFO`, a FIFO topology or scenario file:
    exit status 2 with the reason, no traceback (a blocked open would hit the timeout)."""
    argv = [a.format(fifo=fifo) for a in args]
    result = subprocess.run(
        [sys.executable, "-m", "relevo", *argv], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert said.format(fifo=fifo) in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_open_regular_refuses_what_is_not_a_file(tmp_path: Path, fifo: Path, kind: str):
    """open_regular names what it found instead of a regular file."""
    path = {"fifo": fifo, "directory": tmp_path, "device": Path("/dev/zero")}[kind]
    with pytest.raises(NotRegularFileError) as raised:
        open_regular(path)
    assert (
        raised.value.strerror
        == {
            "fifo": "not a regular file (a FIFO)",
            "directory": "not a regular file (a directory)",
            "device": "not a regular file (a character device)",
        }[kind]
    )


def test_regular_files_read_and_links_follow_only_when_asked(tmp_path: Path):
    """A regular file reads whole (up to the limit); a symbolic link is followed unless refused."""
    target = tmp_path / "file"
    target.write_bytes(b"body")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert read_bytes(link, limit=4) == b"body"
    with pytest.raises(OSError, match="larger than 3 bytes"):
        read_bytes(target, limit=3)
    with pytest.raises(OSError):
        open_regular(link, follow_links=False)
    with open_binary(target) as handle:
        assert handle.read() == b"body"
