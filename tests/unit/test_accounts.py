"""The tiers' reading of `ps` (tests/accounts.py): a daemon's master apart from its workers, so a worker
left running as root shows as one."""

from __future__ import annotations

from tests.accounts import parent_and_worker_accounts, ps_argv

# HAProxy in master-worker mode after a reload: the master, an old worker finishing, the new one.
HAPROXY = """    101       1 root
    230     101 haproxy
    412     101 haproxy
"""


def test_master_and_workers_are_told_apart():
    """The process whose parent is not listed is the master; the others are its workers."""
    assert parent_and_worker_accounts(HAPROXY) == ({"root"}, {"haproxy"})


def test_a_worker_left_as_root_shows():
    """A worker that did not drop to its account is listed among the workers as root."""
    listing = HAPROXY + "    500     101 root\n"
    assert parent_and_worker_accounts(listing) == ({"root"}, {"haproxy", "root"})


def test_the_listing_asked_for_has_no_header():
    """ps is asked for pid, parent pid and user with empty headers: every line is a process."""
    assert ps_argv("apache2") == ["ps", "-C", "apache2", "-o", "pid=,ppid=,user="]
