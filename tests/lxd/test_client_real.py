"""The LXD client against the real daemon: the base image imported, a container on a bridge the test
made (NAT and routing off, so the container reaches nothing else), Apache answering on the container's
bridge address, then freeze, unfreeze, force-stop and delete; LXD left exactly as before."""

from __future__ import annotations

import contextlib
import http.client
import ipaddress
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from relevo.lxd.build import BuiltImage, import_image
from relevo.lxd.client import LXDClient, proxy_device
from relevo.lxd.errors import LXDError, LXDForbiddenError, LXDNotFoundError, LXDUnreachableError
from relevo.lxd.network import free_subnet, isolated_bridge
from relevo.lxd.transport import APIEndpoint
from tests.lxd.conftest import wait_until

pytestmark = [pytest.mark.lxd, pytest.mark.timeout(900)]

TAG = f"{os.getpid() % 1_000_000}"


def http_status(address: str, timeout_s: float = 1.0, *, port: int = 80) -> int | None:
    """GET / on a container on the test's bridge (or a loopback proxy); None when nothing answers in time."""
    conn = http.client.HTTPConnection(address, port, timeout=timeout_s)
    try:
        conn.request("GET", "/")
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 right now, for LXD to listen on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextlib.contextmanager
def undo_stack() -> Iterator[list[Callable[[], None]]]:
    """Undo actions run in reverse order whatever happens, so a failing test still cleans up."""
    undo: list[Callable[[], None]] = []
    try:
        yield undo
    finally:
        for action in reversed(undo):
            with contextlib.suppress(LXDError):
                action()


def test_a_container_from_the_base_image_serves_freezes_stops_and_goes(
    unchanged_lxd: LXDClient, base_image: BuiltImage, tier_pool: str
) -> None:
    """The whole life of a container through the client: create, file push, start, Apache answering on
    the bridge, frozen (connects but never answers), unfrozen, force-stopped, deleted."""
    client = unchanged_lxd
    subnet = free_subnet(start=os.getpid())
    gateway, address = ipaddress.IPv4Interface(f"{subnet[1]}/24"), subnet[10]
    network, profile, name, alias = (
        f"rlvt{TAG}",
        f"relevo-test-{TAG}",
        f"relevo-test-{TAG}",
        f"relevo-test/{TAG}",
    )
    with undo_stack() as undo:
        known = {i["fingerprint"] for i in client.images()}
        imported = import_image(client, base_image.path, alias)
        undo.append(lambda: client.delete_alias(alias))
        if imported.uploaded:
            undo.append(lambda: client.delete_image(imported.fingerprint))
        assert client.alias_target(alias) == imported.fingerprint
        assert imported.uploaded == (imported.fingerprint not in known)  # uploaded only when missing

        client.create_network(network, isolated_bridge(gateway), description="relevo test bridge")
        undo.append(lambda: client.delete_network(network))
        root = {"type": "disk", "path": "/", "pool": tier_pool}
        nic = {"type": "nic", "nictype": "bridged", "parent": network, "name": "cnet0"}
        client.create_profile(profile, devices={"root": root, "cnet0": nic})
        undo.append(lambda: client.delete_profile(profile))

        client.create_instance(name, image=alias, profiles=[profile])
        undo.append(lambda: client.delete_instance(name))
        undo.append(lambda: client.stop(name, force=True))
        # minbase has no udev: ifupdown configures the NIC from a file pushed before the first start.
        interface = f"auto cnet0\niface cnet0 inet static\n    address {address}/24\n"
        client.push_file(name, "/etc/network/interfaces.d/cnet0", interface.encode())
        client.start(name)
        wait_until(lambda: http_status(str(address)) == 200, f"Apache answers on {address}", 120)

        [instance] = [i for i in client.instances() if i.name == name]
        assert instance.status == "Running"
        assert instance.addresses["cnet0"] == (str(address),)
        hostname = client.exec(name, ["cat", "/etc/hostname"])
        assert (hostname.returncode, hostname.stdout.strip()) == (0, name)  # the image's template
        failing = client.exec(name, ["sh", "-c", "echo no >&2; exit 4"])
        assert (failing.returncode, failing.stderr) == (4, "no\n")

        # The balancer's frontend reaches the host through a proxy device on a loopback address.
        port = free_loopback_port()
        client.add_device(name, "front", proxy_device(f"tcp:127.0.0.1:{port}", "tcp:127.0.0.1:80"))
        wait_until(lambda: http_status("127.0.0.1", port=port) == 200, "Apache answers through the proxy", 30)
        client.remove_device(name, "front")
        assert "front" not in client.instance(name).devices
        assert http_status("127.0.0.1", port=port, timeout_s=0.5) is None

        client.freeze(name)
        assert client.instance(name).status == "Frozen"
        assert http_status(str(address), timeout_s=0.5) is None  # the hang fault: no answer
        client.unfreeze(name)
        wait_until(lambda: http_status(str(address)) == 200, "Apache answers again once unfrozen", 30)

        client.stop(name, force=True)
        assert client.instance(name).status == "Stopped"
        assert http_status(str(address), timeout_s=0.5) is None


def test_errors_from_the_real_daemon_are_typed(unchanged_lxd: LXDClient) -> None:
    """What LXD 5.0 answers for a missing instance and an action on it maps to LXDNotFoundError."""
    with pytest.raises(LXDNotFoundError, match="relevo-no-such"):
        unchanged_lxd.instance("relevo-no-such")
    with pytest.raises(LXDNotFoundError):
        unchanged_lxd.start("relevo-no-such")


def _client_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "client.crt", directory / "client.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-nodes", "-days", "1", "-subj", "/CN=relevo-test", "-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


def test_the_same_daemon_as_an_https_remote_with_a_pinned_certificate(
    unchanged_lxd: LXDClient, tmp_path: Path
) -> None:
    """Listening on loopback, the daemon refuses an untrusted client (403), serves it once its certificate
    is trusted, and a client pinning another server certificate never sends a request."""
    local = unchanged_lxd
    server_cert = tmp_path / "server.crt"
    server_cert.write_text(local.server()["environment"]["certificate"])
    cert, key = _client_certificate(tmp_path)
    port = free_loopback_port()
    previous = local.server()["config"].get("core.https_address", "")
    with undo_stack() as undo:
        local.update_server_config({"core.https_address": f"127.0.0.1:{port}"})
        undo.append(lambda: local.update_server_config({"core.https_address": previous}))
        url = f"https://127.0.0.1:{port}"
        remote = LXDClient(APIEndpoint(url=url, client_cert=cert, client_key=key, server_cert=server_cert))
        assert remote.server()["auth"] == "untrusted"
        with pytest.raises(LXDForbiddenError, match="lxc config trust add"):
            remote.instances()

        fingerprint = local.trust_certificate(cert.read_text(), name=f"relevo-test-{TAG}")
        undo.append(lambda: local.untrust_certificate(fingerprint))
        assert remote.server()["auth"] == "trusted"
        assert [i.name for i in remote.instances()] == [i.name for i in local.instances()]

        impostor = LXDClient(APIEndpoint(url=url, client_cert=cert, client_key=key, server_cert=cert))
        with pytest.raises(LXDUnreachableError, match="not the pinned one"):
            impostor.server()
