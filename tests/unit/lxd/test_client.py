"""The LXD client against responses recorded from LXD 5.0.2 (fixtures/, made by record.py), replayed
through a fake unix-socket server: sync answers, async operations, error envelopes, timeouts."""

from __future__ import annotations

import json
import os
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from relevo.errors import ProviderError
from relevo.lxd.client import LXDClient, proxy_device
from relevo.lxd.errors import (
    LXDBadRequestError,
    LXDConflictError,
    LXDForbiddenError,
    LXDNotFoundError,
    LXDOperationError,
    LXDTimeoutError,
    LXDUnreachableError,
)
from relevo.lxd.transport import APIEndpoint

from .fake_lxd import FakeLXD, fixture

Serve = Callable[..., tuple[LXDClient, FakeLXD]]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start a fake LXD replaying the given exchanges; the client pointed at it."""
    fakes: list[FakeLXD] = []
    # A short directory: unix socket paths are limited to ~108 bytes.
    tmp = tempfile.TemporaryDirectory(prefix="lxd")

    def start(exchanges: list[dict[str, Any]], **endpoint: Any) -> tuple[LXDClient, FakeLXD]:
        path = Path(tmp.name) / f"s{len(fakes)}"
        fake = FakeLXD(path, exchanges)
        fakes.append(fake)
        return LXDClient(APIEndpoint(socket_path=path, **endpoint)), fake

    try:
        yield start
    finally:
        for fake in fakes:
            fake.close()
        tmp.cleanup()
    for fake in fakes:
        assert not fake.mismatches, fake.mismatches


def test_server_info_is_the_sync_metadata(serve: Serve) -> None:
    """A sync answer returns its metadata: here GET /1.0 says the API version and that we are trusted."""
    client, _ = serve(fixture("server"))
    info = client.server()
    assert info["api_version"] == "1.0"
    assert info["auth"] == "trusted"
    assert info["environment"]["server_version"] == "5.0.2"


def test_instances_lists_every_instance_with_its_state_in_one_request(serve: Serve) -> None:
    """One GET /1.0/instances?recursion=2 gives name, status, pid and the inet addresses per interface."""
    client, fake = serve(fixture("instances"))
    [instance] = client.instances()
    assert len(fake.received) == 1
    assert fake.received[0].query == {"recursion": "2"}
    assert instance.name == "relevo-rec1"
    assert instance.status == "Running"
    assert instance.status_code == 103
    assert instance.pid > 1
    assert instance.addresses["cnet0"] == ("10.213.7.10",)
    assert instance.addresses["lo"] == ("127.0.0.1",)
    assert instance.devices["web"]["type"] == "proxy"


def test_a_mutating_call_waits_on_its_operation(serve: Serve) -> None:
    """A 202 is followed by GET /1.0/operations/ID/wait with a timeout; the call returns once it succeeded."""
    client, fake = serve(fixture("start"))
    client.start("relevo-rec1", timeout_s=30)
    put, wait = fake.received
    assert (put.method, put.path) == ("PUT", "/1.0/instances/relevo-rec1/state")
    assert json.loads(put.body) == {"action": "start", "force": False, "timeout": 30}
    assert wait.path.endswith("/wait")
    assert int(wait.query["timeout"]) >= 30  # the wait outlasts the action's own timeout


def test_force_stop_asks_for_force(serve: Serve) -> None:
    """stop(force=True) sends force and no clean-shutdown timeout (the crash fault)."""
    client, fake = serve(fixture("stop_force"))
    client.stop("relevo-rec1", force=True)
    assert json.loads(fake.received[0].body) == {"action": "stop", "force": True, "timeout": -1}


def test_freeze_then_unfreeze_each_wait_for_their_operation(serve: Serve) -> None:
    """freeze and unfreeze are two operations, each waited on before the next action (MEASURED.md)."""
    client, fake = serve(fixture("freeze_unfreeze"))
    client.freeze("relevo-rec1")
    client.unfreeze("relevo-rec1")
    actions = [json.loads(r.body)["action"] for r in fake.received if r.method == "PUT"]
    assert actions == ["freeze", "unfreeze"]
    assert [r.method for r in fake.received] == ["PUT", "GET", "PUT", "GET"]


def test_a_failed_operation_raises_with_lxds_reason(serve: Serve) -> None:
    """An operation that ends in Failure becomes LXDOperationError carrying LXD's message."""
    client, _ = serve(fixture("start_running_fails"))
    with pytest.raises(
        LXDOperationError, match=r"start instance 'relevo-rec1' failed: The instance is already running"
    ):
        client.start("relevo-rec1")


def test_an_operation_still_running_after_the_wait_is_a_timeout(serve: Serve) -> None:
    """LXD answers the wait with the operation still Running when its timeout passed: LXDTimeoutError."""
    client, fake = serve(fixture("operation_wait_timeout"))
    with pytest.raises(LXDTimeoutError, match="still Running after 1 s"):
        client.exec("relevo-rec1", ["sleep", "3"], timeout_s=1)
    assert fake.received[1].query == {"timeout": "1"}


def test_no_answer_within_the_timeout_is_a_timeout(serve: Serve) -> None:
    """A daemon that accepts but does not answer makes the call fail after its timeout, not hang."""
    slow = fixture("server")
    slow[0]["response"]["delay_s"] = 1.0
    client, _ = serve(slow, timeout_s=0.2)
    with pytest.raises(LXDTimeoutError, match=r"no answer within 0.2 s"):
        client.server()


@pytest.mark.parametrize(
    ("case", "error", "message"),
    [
        (
            "not_found",
            LXDNotFoundError,
            r"look up instance 'relevo-missing' failed: Instance not found \(404",
        ),
        (
            "conflict",
            LXDConflictError,
            r"create storage pool 'default' failed: The storage pool already exists",
        ),
        ("forbidden", LXDForbiddenError, r"delete profile 'default' failed: .*cannot be deleted \(403"),
        (
            "network_conflict",
            LXDBadRequestError,
            r"create network 'relevorec0' failed: The network already exists",
        ),
    ],
)
def test_error_envelopes_become_typed_errors_saying_what_failed(
    serve: Serve, case: str, error: type[Exception], message: str
) -> None:
    """Each error envelope maps to its type (404, 409, 403, 400), with the action and LXD's own reason."""
    client, _ = serve(fixture(case))
    calls: dict[str, Callable[[], object]] = {
        "not_found": lambda: client.instance("relevo-missing"),
        "conflict": lambda: client.create_storage_pool("default"),
        "forbidden": lambda: client.delete_profile("default"),
        "network_conflict": lambda: client.create_network("relevorec0", {}),
    }
    with pytest.raises(error, match=message) as caught:
        calls[case]()
    assert isinstance(caught.value, ProviderError)  # the CLI prints it as one line, no traceback


def test_an_untrusted_client_is_told_how_to_get_trusted(serve: Serve) -> None:
    """A 403 "not authorized" (what a remote answers an untrusted certificate) says the fix."""
    untrusted = fixture("forbidden")
    untrusted[0]["response"]["body"]["error"] = "not authorized"
    untrusted[0]["request"] = {"method": "GET", "path": "/1.0/instances"}
    client, _ = serve(untrusted)
    with pytest.raises(LXDForbiddenError, match="lxc config trust add"):
        client.instances()


def test_exec_returns_status_and_both_outputs(serve: Serve) -> None:
    """exec sends an argument list, waits, reads stdout and stderr from the recorded logs, removes them."""
    client, fake = serve(fixture("exec"))
    result = client.exec("relevo-rec1", ["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert (result.returncode, result.stdout, result.stderr) == (3, "out\n", "err\n")
    body = json.loads(fake.received[0].body)
    assert body["command"] == ["sh", "-c", "echo out; echo err >&2; exit 3"]
    assert body["record-output"] is True
    assert [r.method for r in fake.received[2:]] == ["GET", "DELETE", "GET", "DELETE"]


def test_push_file_sends_content_and_ownership_headers(serve: Serve) -> None:
    """A file push is the raw bytes with the path as a query and mode/uid/gid in X-LXD-* headers."""
    client, fake = serve(fixture("push_file"))
    client.push_file("relevo-rec1", "/etc/network/interfaces.d/cnet0", b"auto cnet0\n", mode=0o600)
    [push] = fake.received
    assert push.query == {"path": "/etc/network/interfaces.d/cnet0"}
    assert push.body == b"auto cnet0\n"
    assert push.headers["X-LXD-mode"] == "0600"
    assert push.headers["X-LXD-write"] == "overwrite"


def test_incus_gets_its_own_header_names(serve: Serve) -> None:
    """Against Incus the same push uses X-Incus-* headers."""
    client, fake = serve(fixture("push_file"), flavour="incus")
    client.push_file("relevo-rec1", "/etc/network/interfaces.d/cnet0", b"x")
    assert fake.received[0].headers["X-Incus-type"] == "file"


def test_adding_a_proxy_device_keeps_the_others_and_sends_the_etag(serve: Serve) -> None:
    """add_device reads the instance, adds one device, and PUTs it back with If-Match (no lost update)."""
    exchanges = fixture("add_proxy_device")
    etag = exchanges[0]["response"]["headers"]["ETag"]
    client, fake = serve(exchanges)
    client.add_device("relevo-rec1", "web", proxy_device("tcp:127.213.7.10:8080", "tcp:127.0.0.1:80"))
    _get, put, _wait = fake.received
    assert put.headers["If-Match"] == etag
    devices = json.loads(put.body)["devices"]
    assert devices["web"] == {
        "type": "proxy",
        "listen": "tcp:127.213.7.10:8080",
        "connect": "tcp:127.0.0.1:80",
        "bind": "host",
    }
    assert json.loads(put.body)["profiles"] == ["relevo-rec"]


def test_create_instance_names_image_profiles_and_cluster_target(serve: Serve) -> None:
    """create_instance asks for a container from an image alias, with the given profiles and target."""
    client, fake = serve(fixture("instance_create"))
    client.create_instance("relevo-rec1", image="relevo-rec", profiles=["relevo-rec"], target="member2")
    post = fake.received[0]
    assert post.query == {"target": "member2"}
    body = json.loads(post.body)
    assert body["source"] == {"type": "image", "alias": "relevo-rec"}
    assert (body["type"], body["profiles"]) == ("container", ["relevo-rec"])


def test_image_import_uploads_the_tarball_and_returns_its_fingerprint(serve: Serve, tmp_path: Path) -> None:
    """The tarball is the request body; the finished operation names the fingerprint; the alias is made."""
    client, fake = serve(fixture("image_import"))
    tarball = tmp_path / "image.tar.zst"
    tarball.write_bytes(b"not really an image")
    fingerprint = client.import_image(tarball)
    client.set_alias("relevo-rec", fingerprint)
    assert len(fingerprint) == 64
    assert fake.received[0].body == b"not really an image"
    assert json.loads(fake.received[3].body) == {
        "name": "relevo-rec",
        "target": fingerprint,
        "description": "",
    }


def test_project_scopes_every_call(serve: Serve) -> None:
    """An endpoint with a project adds ?project= to each request."""
    client, fake = serve(fixture("stop_force"), project="relevo")
    client.stop("relevo-rec1", force=True)
    assert all(r.query.get("project") == "relevo" for r in fake.received)


def test_names_cannot_reach_another_endpoint(serve: Serve) -> None:
    """A name with a slash is quoted into one path segment, so it cannot address another resource."""
    exchanges = fixture("not_found")
    exchanges[0]["request"]["path"] = "/1.0/instances/..%2Frelevo-missing"
    client, fake = serve(exchanges)
    with pytest.raises(LXDNotFoundError):
        client.instance("../relevo-missing")
    assert fake.received[0].path == "/1.0/instances/..%2Frelevo-missing"


def test_no_socket_says_how_to_start_lxd(tmp_path: Path) -> None:
    """A missing socket is LXDUnreachableError naming the socket and how to start the daemon."""
    client = LXDClient(APIEndpoint(socket_path=tmp_path / "missing.socket"))
    with pytest.raises(LXDUnreachableError, match=r"missing.socket.*lxd-daemon start"):
        client.server()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may connect to any socket")
def test_a_socket_without_permission_says_which_group(tmp_path: Path) -> None:
    """A socket this user may not open says to join the daemon's group."""
    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        path.chmod(0)
        with pytest.raises(LXDUnreachableError, match="usermod -aG lxd"):
            LXDClient(APIEndpoint(socket_path=path)).server()


def test_lxd_dir_picks_the_socket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """LXD_DIR overrides the usual socket locations, as it does for the lxc command."""
    monkeypatch.setenv("LXD_DIR", str(tmp_path))
    assert APIEndpoint.local().socket_path == tmp_path / "unix.socket"


def test_incus_dir_picks_incus_s_socket_and_api_flavour(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """INCUS_DIR (Incus's own variable) picks its socket and Incus's header names; LXD_DIR wins over it."""
    monkeypatch.delenv("LXD_DIR", raising=False)
    monkeypatch.setenv("INCUS_DIR", str(tmp_path))
    endpoint = APIEndpoint.local()
    assert (endpoint.socket_path, endpoint.flavour) == (tmp_path / "unix.socket", "incus")
    monkeypatch.setenv("LXD_DIR", str(tmp_path / "lxd"))
    assert APIEndpoint.local().flavour == "lxd"


FORKFILE_RESET = {
    "request": {"method": "POST", "path": "/1.0/instances/relevo-rec1/files"},
    "response": {
        "status": 500,
        "headers": {"Content-Type": "application/json"},
        "body": {
            "type": "error",
            "error": "read unix @->/proc/self/fd/71/forkfile.sock: read: connection reset by peer",
            "error_code": 500,
            "metadata": None,
        },
    },
}


def test_a_file_push_that_meets_lxds_file_helper_exiting_is_sent_again(serve: Serve) -> None:
    """LXD's per-instance file helper reset while exiting (a 500 naming forkfile.sock): the same
    idempotent push is sent again and succeeds, the content unchanged."""
    client, fake = serve([FORKFILE_RESET, FORKFILE_RESET, *fixture("push_file")])
    client.push_file("relevo-rec1", "/etc/x", b"content")
    assert [r.body for r in fake.received] == [b"content"] * 3


def test_a_file_read_is_retried_a_bounded_number_of_times_then_raises(serve: Serve) -> None:
    """Three resets in a row are LXD's failure, raised with its reason; nothing is retried forever."""
    reset = {**FORKFILE_RESET, "request": {"method": "GET", "path": "/1.0/instances/relevo-rec1/files"}}
    client, fake = serve([reset, reset, reset])
    with pytest.raises(ProviderError, match=r"read /etc/x in 'relevo-rec1' failed: .*forkfile.sock"):
        client.read_file("relevo-rec1", "/etc/x")
    assert len(fake.received) == 3


def test_other_file_errors_are_raised_at_once(serve: Serve) -> None:
    """A file error that is not the helper's reset (here a 404) is not sent again."""
    missing = {
        "request": {"method": "GET", "path": "/1.0/instances/relevo-rec1/files"},
        "response": {
            "status": 404,
            "headers": {"Content-Type": "application/json"},
            "body": {"type": "error", "error": "Not Found", "error_code": 404, "metadata": None},
        },
    }
    client, fake = serve([missing])
    with pytest.raises(LXDNotFoundError):
        client.read_file("relevo-rec1", "/etc/x")
    assert len(fake.received) == 1
