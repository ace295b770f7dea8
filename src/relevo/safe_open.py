"""Opening a file the user named, for reading: only a regular file.

A FIFO blocks `open()` until a writer comes (forever, if none does) and a device can give bytes without
end; a directory fails late and obscurely. Every file relevo reads on a user's word (a topology, a scenario
file, a JMeter plan or result file, a request body, an image tarball, a certificate) is opened here: with
O_NONBLOCK, so a FIFO's open returns at once, then checked with fstat before a byte is read. A refusal is
a `NotRegularFileError`, an OSError, so a caller's `except OSError` already words it.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from pathlib import Path
from typing import BinaryIO, TextIO


class NotRegularFileError(OSError):
    """The path names a directory, FIFO, socket or device, not a regular file."""


def kind_of(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "of an unknown kind"


def open_regular(path: Path | str, *, follow_links: bool = True) -> int:
    """A read-only descriptor of the regular file `path` (never blocking on a FIFO on the way); raises
    NotRegularFileError for anything else, OSError when it cannot be opened."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_links else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(errno.EINVAL, f"not a regular file ({kind_of(mode)})", str(path))
        # Reads of a regular file never block anyway; clear the flag so nothing downstream sees EAGAIN.
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def open_binary(path: Path | str, *, follow_links: bool = True) -> BinaryIO:
    """`open_regular` as a buffered binary file object."""
    return os.fdopen(open_regular(path, follow_links=follow_links), "rb")


def open_text(
    path: Path | str, *, encoding: str = "utf-8", errors: str = "strict", newline: str | None = None
) -> TextIO:
    """`open_regular` as a text file object."""
    return io.TextIOWrapper(open_binary(path), encoding=encoding, errors=errors, newline=newline)


def read_bytes(path: Path | str, *, limit: int) -> bytes:
    """The whole regular file `path`, refused (OSError EFBIG) past `limit` bytes."""
    with open_binary(path) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise OSError(errno.EFBIG, f"larger than {limit} bytes", str(path))
    return data
