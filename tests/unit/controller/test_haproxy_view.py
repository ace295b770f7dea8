"""Reading HAProxy's admin and operational state from `show servers state` (HAProxy 2.6's format)."""

from __future__ import annotations

import pytest

from relevo.controller.haproxy_view import parse_servers_state
from relevo.errors import RuntimeAPIError
from relevo.haproxy.runtime import AdminState

# Captured from HAProxy 2.6.12: a ready server, a `disabled` one put ready (CMAINT kept, 4), one in
# forced maint from `disabled` (5), one draining (8), and a server of another backend.
SAMPLE = """1
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight \
srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state \
srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port \
srv_check_addr srv_agent_addr srv_agent_port
3 web 1 web1 127.0.0.3 2 0 1 1 12 6 3 4 6 0 0 0 - 8080 - 0 0 - - 0
3 web 2 web2 127.0.0.4 2 4 1 1 12 6 3 4 6 0 0 0 - 8080 - 0 0 - - 0
3 web 3 web1bck 127.0.0.5 0 5 1 1 12 1 0 0 14 0 0 0 - 8080 - 0 0 - - 0
3 web 4 web2bck 127.0.0.6 2 8 1 1 12 6 3 4 6 0 0 0 - 8080 - 0 0 - - 0
4 other 1 web1 127.0.0.9 0 1 1 1 12 1 0 0 14 0 0 0 - 8080 - 0 0 - - 0
"""


def test_admin_and_operational_state_per_server():
    """Admin bits map to ready/drain/maint (config `disabled` alone is not maint); op state 2 is up."""
    assert parse_servers_state(SAMPLE, "web") == {
        "web1": (AdminState.READY, True),
        "web2": (AdminState.READY, True),
        "web1bck": (AdminState.MAINT, False),
        "web2bck": (AdminState.DRAIN, True),
    }


def test_garbage_is_an_error_not_an_empty_backend():
    """An answer without the header is a Runtime API error, not "no servers"."""
    with pytest.raises(RuntimeAPIError):
        parse_servers_state("Unknown command\n", "web")
