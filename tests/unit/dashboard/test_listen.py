"""`relevo dashboard --listen`: where the page is served, and a wrong value refused as bad input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from relevo.cli import cli
from relevo.dashboard.process import parse_listen


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9000", ("127.0.0.1", 9000)),
        ("[::1]:9000", ("::1", 9000)),
        ("9000", ("127.101.9.2", 9000)),  # a port alone: the default (loopback) address, not every one
    ],
)
def test_listen_is_host_and_port_or_a_port_on_the_default_address(text, expected):
    """HOST:PORT as given (an IPv6 host in brackets); a PORT alone on the default address."""
    assert parse_listen(text, "127.101.9.2") == expected


@pytest.mark.parametrize("text", ["bogus", ":9000", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "h:x"])
def test_a_wrong_listen_value_is_refused(text):
    """Anything else is a ValueError that says what was expected (an empty host would mean every
    address: refused, not guessed)."""
    with pytest.raises(ValueError, match=re.escape("expected HOST:PORT such as 127.0.0.1:8405, or a PORT")):
        parse_listen(text, "127.101.9.2")


def test_relevo_dashboard_refuses_a_wrong_listen_with_exit_2_and_starts_nothing(tmp_path: Path) -> None:
    """`relevo dashboard --listen bogus`: exit 2 naming the option and what was expected, no traceback,
    and no state directory made (nothing was started)."""
    topology = tmp_path / "relevo.yaml"
    topology.write_text("name: t\nnetwork: 127.101.9.0/24\n", "utf-8")
    result = CliRunner().invoke(cli, ["-f", str(topology), "dashboard", "--listen", "bogus"])
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "'--listen'" in result.stderr and "expected HOST:PORT" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / ".relevo").exists()
