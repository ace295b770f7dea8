"""sshd's StrictModes for the state directory's ancestors, and the descriptor relevo holds once it claimed
the directory (issue 17, item 1)."""

from __future__ import annotations

import os
import pwd

import pytest

from relevo import anchor
from relevo.files import UnsafeStateError, claim_state_dir
from relevo.paths import StatePaths
from relevo.strict_modes import unsafe_ancestor


@pytest.mark.parametrize(("mode", "fix"), [(0o777, "chmod go-w"), (0o707, "chmod o-w"), (0o775, "chmod g-w")])
def test_a_topology_directory_others_can_write_is_refused_naming_the_fix(tmp_path, mode, fix):
    """A state directory below a directory others may write to (no sticky bit) is refused, exit 2, with
    the directory and the chmod that fixes it; nothing is created."""
    site = tmp_path / "site"
    site.mkdir()
    site.chmod(mode)
    if mode & 0o020:
        os.chown(site, -1, _shared_group())
    with pytest.raises(UnsafeStateError) as info:
        claim_state_dir(site / ".relevo")
    assert info.value.exit_status == 2
    assert f"{fix} {site}`" in str(info.value)
    assert not (site / ".relevo").exists()


def test_a_deeper_ancestor_others_can_write_is_refused_too(tmp_path):
    """The check walks up to /: a world-writable grandparent is refused as well."""
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared").chmod(0o777)
    (tmp_path / "shared" / "site").mkdir(mode=0o755)
    with pytest.raises(UnsafeStateError, match=f"{tmp_path / 'shared'} is writable by every user"):
        claim_state_dir(tmp_path / "shared" / "site" / ".relevo")


def test_a_sticky_world_writable_ancestor_is_accepted(tmp_path):
    """In a sticky directory (as /tmp) nobody renames what they do not own: accepted."""
    site = tmp_path / "site"
    site.mkdir()
    site.chmod(0o1777)
    claim_state_dir(site / ".relevo")
    assert (site / ".relevo").is_dir()


def test_a_group_writable_directory_of_a_private_group_is_accepted(tmp_path):
    """Group-writable with a group nobody but the owner is in (Debian's sshd rule) is accepted."""
    if os.geteuid() != 0:
        pytest.skip("needs a group of root's own (gid 0)")
    site = tmp_path / "site"
    site.mkdir()
    os.chown(site, 0, 0)
    site.chmod(0o775)
    assert unsafe_ancestor(site / ".relevo") is None


def test_an_ancestor_another_user_owns_is_refused(tmp_path):
    """An ancestor owned by someone other than root or us could be made writable at any time: refused."""
    if os.geteuid() != 0:
        pytest.skip("needs root to give a directory to another user")
    site = tmp_path / "site"
    site.mkdir(mode=0o755)
    nobody = pwd.getpwnam("nobody").pw_uid
    os.chown(site, nobody, -1)
    problem = unsafe_ancestor(site / ".relevo")
    assert problem is not None and f"belongs to uid {nobody}" in problem


def test_a_claimed_directory_is_reached_through_its_descriptor_after_a_rename(tmp_path):
    """Once claimed, StatePaths.held() reaches the directory that was checked, whatever its name names
    later (a swap)."""
    state = tmp_path / ".relevo"
    claim_state_dir(state)
    try:
        held = StatePaths(state).held()
        (held.root / "mine").write_text("checked")
        state.rename(tmp_path / "moved")
        state.mkdir(mode=0o700)
        assert (held.root / "mine").read_text() == "checked"
        assert not (state / "mine").exists()
        assert anchor.real(held.root / "mine") == state / "mine"
    finally:
        anchor.release(state)


def _shared_group() -> int:
    """A group with members other than its owner (or none suitable: the test is skipped)."""
    import grp

    for group in grp.getgrall():
        if group.gr_mem and group.gr_gid != 0:
            return group.gr_gid
    for entry in pwd.getpwall():
        if entry.pw_uid != os.geteuid() and entry.pw_gid != 0:
            return entry.pw_gid  # someone else's primary group
    pytest.skip("no group shared with another user")
