"""Records the fixtures the client's unit tests replay, from a real LXD daemon (run as root, by hand):

    .venv/bin/python tests/unit/lxd/record.py IMAGE_TARBALL

It puts a recording proxy on a unix socket between the client and the daemon, drives the client
through each case and writes the exchanges to fixtures/CASE.json. It creates a bridge (NAT and routing
off), a profile, an image and one container, and removes them all at the end.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import socketserver
import sys
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from relevo.lxd.client import LXDClient, proxy_device
from relevo.lxd.errors import LXDError
from relevo.lxd.transport import APIEndpoint

FIXTURES = Path(__file__).parent / "fixtures"
KEEP_HEADERS = ("ETag", "Content-Type")


class Recorder:
    def __init__(self, upstream: Path, path: Path) -> None:
        self.exchanges: list[dict[str, Any]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection("lxd", timeout=120)
                sock = socket.socket(socket.AF_UNIX)
                sock.connect(str(upstream))
                conn.sock = sock
                conn.request(self.command, self.path, body=body, headers=dict(self.headers))
                reply = conn.getresponse()
                data = reply.read()
                conn.close()
                try:
                    recorded: Any = json.loads(data)
                except ValueError:
                    recorded = data.decode()
                headers = {h: value for h in KEEP_HEADERS if (value := reply.getheader(h))}
                recorder.exchanges.append(
                    {
                        "request": {"method": self.command, "path": self.path.split("?")[0]},
                        "response": {"status": reply.status, "headers": headers, "body": recorded},
                    }
                )
                self.send_response(reply.status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = forward

        class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
            daemon_threads = True

        self.server = Server(str(path), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @contextlib.contextmanager
    def case(self, name: str) -> Iterator[None]:
        self.exchanges.clear()
        try:
            yield
        except LXDError as exc:
            print(f"{name}: {type(exc).__name__}: {exc}")
        (FIXTURES / f"{name}.json").write_text(json.dumps(self.exchanges, indent=1) + "\n")
        print(f"{name}: {len(self.exchanges)} exchanges")


def main(tarball: Path) -> None:
    FIXTURES.mkdir(exist_ok=True)
    real = LXDClient()
    assert real.endpoint.socket_path is not None
    with tempfile.TemporaryDirectory() as tmp:
        rec = Recorder(real.endpoint.socket_path, Path(tmp) / "rec.socket")
        c = LXDClient(APIEndpoint(socket_path=Path(tmp) / "rec.socket"))
        net, prof, name = "relevorec0", "relevo-rec", "relevo-rec1"
        fingerprint = ""
        try:
            with rec.case("server"):
                c.server()
            with rec.case("image_import"):
                fingerprint = c.import_image(tarball)
                c.set_alias("relevo-rec", fingerprint)
            with rec.case("conflict"):
                c.create_storage_pool("default")
            with rec.case("forbidden"):
                c.delete_profile("default")
            with rec.case("network_create"):
                c.create_network(
                    net,
                    {
                        "ipv4.address": "10.213.7.1/24",
                        "ipv4.nat": "false",
                        "ipv4.firewall": "false",
                        "ipv4.routing": "false",
                        "ipv6.address": "none",
                        "ipv6.firewall": "false",
                    },
                )
            with rec.case("network_conflict"):
                c.create_network(net, {"ipv6.address": "none"})
            with rec.case("profile_create"):
                root = {"type": "disk", "path": "/", "pool": "default"}
                nic = {"type": "nic", "nictype": "bridged", "parent": net, "name": "cnet0"}
                c.create_profile(prof, devices={"root": root, "cnet0": nic})
            with rec.case("instance_create"):
                c.create_instance(name, image="relevo-rec", profiles=[prof])
            with rec.case("not_found"):
                c.instance("relevo-missing")
            with rec.case("push_file"):
                text = "auto cnet0\niface cnet0 inet static\n  address 10.213.7.10/24\n"
                c.push_file(name, "/etc/network/interfaces.d/cnet0", text.encode())
            with rec.case("add_proxy_device"):
                c.add_device(name, "web", proxy_device("tcp:127.213.7.10:8080", "tcp:127.0.0.1:80"))
            with rec.case("start"):
                c.start(name)
            with rec.case("start_running_fails"):
                c.start(name)
            with rec.case("instances"):
                c.instances()
            with rec.case("exec"):
                c.exec(name, ["sh", "-c", "echo out; echo err >&2; exit 3"])
            with rec.case("operation_wait_timeout"):
                c.exec(name, ["sleep", "3"], timeout_s=1)
            with rec.case("freeze_unfreeze"):
                c.freeze(name)
                c.unfreeze(name)
            with rec.case("stop_force"):
                c.stop(name, force=True)
            with rec.case("instance_delete"):
                c.delete_instance(name)
            with rec.case("cleanup"):
                c.delete_profile(prof)
                c.delete_network(net)
                c.delete_alias("relevo-rec")
                c.delete_image(fingerprint)
        finally:
            for undo in (
                lambda: real.stop(name, force=True),
                lambda: real.delete_instance(name),
                lambda: real.delete_profile(prof),
                lambda: real.delete_network(net),
                lambda: real.delete_image(fingerprint),
            ):
                with contextlib.suppress(LXDError, KeyError):
                    undo()
            rec.server.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
