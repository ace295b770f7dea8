"""sshd's StrictModes for the state directory's ancestors: nobody else may be able to rename it.

Whoever may write to a directory may rename what is in it, and `renameat2(RENAME_EXCHANGE)` swaps two
directories in one step: a state directory in a topology directory others can write to can be swapped
for theirs while relevo, often as root, starts daemons from it. So, as sshd does for `~/.ssh`
(`safe_path()` in OpenSSH's misc.c), every directory from `/` down to the state directory must be

- owned by root or by the user relevo runs as, and
- writable by no one else: no write bit for others, and no write bit for the group unless the group
  has no member but the directory's owner (Debian's sshd rule, its user-group-modes patch, for the
  private group every user gets),

with one exception sshd does not need: an ancestor with the sticky bit (as /tmp) is accepted, because
in it nobody may rename or remove an entry they do not own, and each entry on the way down is checked
in turn (so is its owner).
"""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path


def unsafe_ancestor(root: Path) -> str | None:
    """Why `root`'s parent chain would let another user replace `root` (the message names the directory
    and the `chmod` that fixes it), or None when it is safe."""
    me = os.geteuid()
    directory = (Path.cwd() / root).parent.resolve()
    while not directory.exists() and directory.parent != directory:
        directory = directory.parent  # not made yet: what exists above it decides
    while True:
        try:
            info = directory.stat()
        except OSError as exc:
            return f"cannot inspect {directory}: {exc.strerror}"
        problem = _problem(directory, info, me)
        if problem:
            return problem
        if directory.parent == directory:
            return None
        directory = directory.parent


def _problem(directory: Path, info: os.stat_result, me: int) -> str | None:
    if info.st_uid not in (0, me):
        return (
            f"{directory} belongs to uid {info.st_uid} ({_user(info.st_uid)}), who could replace the "
            f"state directory beneath it; keep the topology in a directory owned by you or by root "
            f"(or `chown {_user(me)} {directory}`)"
        )
    mode = stat.S_IMODE(info.st_mode)
    if mode & stat.S_ISVTX:
        return None  # sticky: nobody may rename what they do not own (and every owner is checked)
    others = bool(mode & stat.S_IWOTH)
    group = bool(mode & stat.S_IWGRP) and not _private_group(info.st_gid, info.st_uid)
    if not (others or group):
        return None
    fix = "go-w" if group and others else ("o-w" if others else "g-w")
    who = "every user" if others else f"group {_group(info.st_gid)}"
    return (
        f"{directory} is writable by {who} (mode {mode:o}, no sticky bit): another user could swap "
        f"the state directory beneath it while relevo runs; run `chmod {fix} {directory}` (or "
        f"`chmod +t {directory}`), or keep the topology elsewhere"
    )


def _private_group(gid: int, owner: int) -> bool:
    """The group has no member but the owner: nobody else gets write access through it."""
    try:
        group = grp.getgrgid(gid)
        owner_name = pwd.getpwuid(owner).pw_name
    except KeyError:
        return False
    if any(member != owner_name for member in group.gr_mem):
        return False
    return all(entry.pw_uid == owner for entry in pwd.getpwall() if entry.pw_gid == gid)


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
