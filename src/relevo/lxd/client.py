"""A thin typed client for LXD's REST API (and Incus's, which is the same API).

Semantics as pylxd has them, without its models: every call is one request with a timeout; a mutating
call that LXD answers with 202 returns once its operation has finished (`/1.0/operations/ID/wait`, with a
timeout) or raises; error envelopes become typed errors (`LXDNotFoundError`, `LXDConflictError`,
`LXDForbiddenError`, …) that say what relevo was doing. One connection per request, so a client may be
shared between threads.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from relevo.lxd.errors import (
    LXDError,
    LXDOperationError,
    LXDTimeoutError,
    LXDUnreachableError,
    error_for_status,
)
from relevo.lxd.transport import APIEndpoint, certificate_fingerprint
from relevo.safe_open import open_binary

OPERATION_TIMEOUT_S = 60.0
# The first container from an image unpacks its root file system (~400 MB): seconds, more on a busy disk.
CREATE_TIMEOUT_S = 300.0
IMAGE_IMPORT_TIMEOUT_S = 600.0
# The operation's wait endpoint holds the request open; the socket may wait this much longer than it.
WAIT_SLACK_S = 5.0
# LXD 5.0 serves an instance's files through a per-instance `forkfile` helper that exits after ~15 s
# without a request (lxd/main_forkfile.go). A request that reaches it while it exits is reset: a 500
# "…/forkfile.sock: read: connection reset by peer" (it failed a whole CI run of the LXD tier). The next
# request starts a fresh helper, and every file request relevo makes is idempotent (a read, or a whole
# file overwritten), so such a request is sent again after these pauses; any other error is raised at once.
FORKFILE_RETRY_PAUSES_S = (0.1, 0.5)

Json = dict[str, Any]
Body = bytes | IO[bytes] | None


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    metadata: Any
    operation: str | None = None
    etag: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Instance:
    """An instance as `GET /1.0/instances?recursion=2` shows it: configuration and live state at once."""

    name: str
    status: str  # Running, Stopped, Frozen, …
    status_code: int
    type: str = "container"
    location: str = ""
    pid: int = 0
    config: Mapping[str, str] = field(default_factory=dict)
    devices: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    addresses: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # interface → inet addresses

    @classmethod
    def from_api(cls, data: Json) -> Instance:
        state = data.get("state") or {}
        addresses = {
            interface: tuple(a["address"] for a in info.get("addresses") or [] if a.get("family") == "inet")
            for interface, info in (state.get("network") or {}).items()
        }
        return cls(
            name=data["name"],
            status=data.get("status", state.get("status", "")),
            status_code=int(data.get("status_code", state.get("status_code", 0))),
            type=data.get("type", "container"),
            location=data.get("location", ""),
            pid=int(state.get("pid", 0) or 0),
            config=data.get("config") or {},
            devices=data.get("devices") or {},
            addresses=addresses,
        )


@dataclass(frozen=True, slots=True)
class ExecResult:
    returncode: int
    stdout: str
    stderr: str


def proxy_device(listen: str, connect: str, *, bind: str = "host", **options: str) -> dict[str, str]:
    """An LXD proxy device: `listen=tcp:127.130.0.2:8080 connect=tcp:127.0.0.1:80`, or unix sockets
    (`listen=unix:/host/path connect=unix:/run/haproxy/admin.sock mode=0600`)."""
    return {"type": "proxy", "listen": listen, "connect": connect, "bind": bind, **options}


class LXDClient:
    def __init__(self, endpoint: APIEndpoint | None = None) -> None:
        self.endpoint = endpoint or APIEndpoint.local()

    # --- the one request function -------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        json_body: Any = None,
        body: Body = None,
        headers: Mapping[str, str] | None = None,
        query: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
        raw: bool = False,
    ) -> Response:
        """Send one request; return the sync envelope's metadata (or, for `raw`, the body's bytes), raise a
        typed error for an error envelope. A 202 is returned as is: see `call`, which waits on it."""
        params = dict(query or {})
        if self.endpoint.project and "project" not in params:
            params["project"] = self.endpoint.project
        target = path + ("?" + urllib.parse.urlencode(params) if params else "")
        send_headers = {"Accept": "application/json", **(headers or {})}
        payload: Body = body
        if json_body is not None:
            payload = json.dumps(json_body).encode()
            send_headers["Content-Type"] = "application/json"
        timeout = timeout_s if timeout_s is not None else self.endpoint.timeout_s
        conn = self.endpoint.connect(timeout)
        try:
            conn.request(method, target, body=payload, headers=send_headers)
            reply = conn.getresponse()
            data = reply.read()
            etag = reply.getheader("ETag")
        except TimeoutError as exc:
            raise LXDTimeoutError(what, f"no answer within {timeout:g} s", method=method, path=path) from exc
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            raise LXDUnreachableError(what, f"connection to {self.endpoint.name} broke: {exc}") from exc
        finally:
            conn.close()
        if raw and reply.status < 400:
            return Response(reply.status, data, None, etag)
        try:
            envelope = json.loads(data)
        except ValueError as exc:
            raise LXDError(what, f"not a JSON answer: {data[:120]!r}", method=method, path=path) from exc
        if envelope.get("type") == "error" or reply.status >= 400:
            status = int(envelope.get("error_code") or reply.status)
            message = envelope.get("error") or reply.reason
            if status == 403 and "not authorized" in message.lower():
                message += (
                    " (this client's certificate is not trusted: on the server, `lxc config trust add CERT`)"
                )
            raise error_for_status(status)(what, message, method=method, path=path, status=status)
        return Response(reply.status, envelope.get("metadata"), envelope.get("operation") or None, etag)

    def call(
        self, method: str, path: str, *, what: str, wait_s: float = OPERATION_TIMEOUT_S, **kw: Any
    ) -> Any:
        """A request whose 202 is followed to its operation's end: the metadata of the sync answer, or of
        the finished operation."""
        response = self.request(method, path, what=what, **kw)
        if response.status == 202 and response.operation:
            return self.wait(response.operation, what=what, timeout_s=wait_s).get("metadata")
        return response.metadata

    def wait(self, operation: str, *, what: str, timeout_s: float = OPERATION_TIMEOUT_S) -> Json:
        """Wait until the operation at `operation` (its /1.0/operations/ID path) ends; its final state, or
        `LXDOperationError` / `LXDTimeoutError`."""
        seconds = max(1, round(timeout_s))
        op: Json = self.request(
            "GET",
            f"{operation}/wait",
            what=what,
            query={"timeout": str(seconds)},
            timeout_s=seconds + WAIT_SLACK_S,
        ).metadata
        status = op.get("status", "")
        if status == "Success":
            return op
        if status in ("Running", "Pending"):
            raise LXDTimeoutError(
                what, f"operation {op.get('id', operation)} still {status} after {seconds} s"
            )
        raise LXDOperationError(what, op.get("err") or f"operation ended {status}", path=operation)

    # --- the server -------------------------------------------------------------------------------

    def server(self) -> Json:
        """`GET /1.0`: API version, `auth` (trusted or untrusted), the server's environment and config."""
        result: Json = self.call("GET", "/1.0", what="ask LXD about itself")
        return result

    def update_server_config(self, config: Mapping[str, str]) -> None:
        self.call(
            "PATCH", "/1.0", what="update LXD's server configuration", json_body={"config": dict(config)}
        )

    def trust_certificate(self, pem: str, *, name: str) -> str:
        """Trust a client certificate (what `lxc config trust add` does); its fingerprint."""
        der = ssl.PEM_cert_to_DER_cert(pem)
        body = {"type": "client", "name": name, "certificate": base64.b64encode(der).decode()}
        self.call("POST", "/1.0/certificates", what=f"trust certificate '{name}'", json_body=body)
        return certificate_fingerprint(pem)

    def untrust_certificate(self, fingerprint: str) -> None:
        self.call(
            "DELETE",
            f"/1.0/certificates/{fingerprint}",
            what=f"remove trusted certificate {fingerprint[:12]}",
        )

    def certificates(self) -> list[str]:
        """Fingerprints of the trusted certificates."""
        return [c["fingerprint"] for c in self._list("/1.0/certificates", "list trusted certificates")]

    def storage_pools(self) -> list[str]:
        return [p["name"] for p in self._list("/1.0/storage-pools", "list storage pools")]

    def create_storage_pool(self, name: str, driver: str = "dir", *, description: str = "") -> None:
        """A storage pool with LXD's defaults: a `btrfs` one lives in a loop file LXD makes (sparse, its
        size a share of the free disk) and removes with the pool."""
        body = {"name": name, "driver": driver, "config": {}, "description": description}
        self.call("POST", "/1.0/storage-pools", what=f"create storage pool '{name}'", json_body=body)

    def storage_pool(self, name: str) -> Json:
        pool: Json = self.call("GET", f"/1.0/storage-pools/{_q(name)}", what=f"show storage pool '{name}'")
        return pool

    def delete_storage_pool(self, name: str) -> None:
        self.call("DELETE", f"/1.0/storage-pools/{_q(name)}", what=f"delete storage pool '{name}'")

    def _list(self, path: str, what: str, recursion: int = 1) -> list[Json]:
        items: list[Json] = self.call("GET", path, what=what, query={"recursion": str(recursion)}) or []
        return items

    # --- instances --------------------------------------------------------------------------------

    def instances(self) -> list[Instance]:
        """Every instance with its state, in one request (the controller's tick)."""
        return [Instance.from_api(i) for i in self._list("/1.0/instances", "list instances", recursion=2)]

    def instance(self, name: str) -> Instance:
        data = self.call("GET", f"/1.0/instances/{_q(name)}", what=f"look up instance '{name}'")
        state = self.call("GET", f"/1.0/instances/{_q(name)}/state", what=f"look up instance '{name}'")
        return Instance.from_api({**data, "state": state})

    def create_instance(
        self,
        name: str,
        *,
        image: str,
        profiles: list[str] | None = None,
        devices: Mapping[str, Mapping[str, str]] | None = None,
        config: Mapping[str, str] | None = None,
        target: str | None = None,
        wait_s: float = CREATE_TIMEOUT_S,
    ) -> None:
        """A stopped container from the image with alias (or fingerprint) `image`; `target` places it on
        one member of an LXD cluster."""
        source = {"type": "image", ("fingerprint" if _is_fingerprint(image) else "alias"): image}
        body = {
            "name": name,
            "type": "container",
            "source": source,
            "profiles": profiles if profiles is not None else ["default"],
            "devices": {k: dict(v) for k, v in (devices or {}).items()},
            "config": dict(config or {}),
        }
        query = {"target": target} if target else None
        self.call(
            "POST",
            "/1.0/instances",
            what=f"create instance '{name}'",
            json_body=body,
            query=query,
            wait_s=wait_s,
        )

    def set_state(
        self, name: str, action: str, *, force: bool = False, timeout_s: float = OPERATION_TIMEOUT_S
    ) -> None:
        """start, stop, restart, freeze or unfreeze; returns when LXD says it is done."""
        body = {"action": action, "force": force, "timeout": -1 if force else round(timeout_s)}
        what = f"{action} instance '{name}'" + (" (forced)" if force else "")
        self.call(
            "PUT",
            f"/1.0/instances/{_q(name)}/state",
            what=what,
            json_body=body,
            wait_s=timeout_s + WAIT_SLACK_S,
        )

    def start(self, name: str, *, timeout_s: float = OPERATION_TIMEOUT_S) -> None:
        self.set_state(name, "start", timeout_s=timeout_s)

    def stop(self, name: str, *, force: bool = False, timeout_s: float = OPERATION_TIMEOUT_S) -> None:
        self.set_state(name, "stop", force=force, timeout_s=timeout_s)

    def freeze(self, name: str, *, timeout_s: float = OPERATION_TIMEOUT_S) -> None:
        self.set_state(name, "freeze", timeout_s=timeout_s)

    def unfreeze(self, name: str, *, timeout_s: float = OPERATION_TIMEOUT_S) -> None:
        self.set_state(name, "unfreeze", timeout_s=timeout_s)

    def delete_instance(self, name: str, *, wait_s: float = OPERATION_TIMEOUT_S) -> None:
        self.call("DELETE", f"/1.0/instances/{_q(name)}", what=f"delete instance '{name}'", wait_s=wait_s)

    def push_file(
        self, name: str, path: str, content: bytes, *, mode: int = 0o644, uid: int = 0, gid: int = 0
    ) -> None:
        """Write `content` to `path` inside the instance (created or replaced)."""
        prefix = "X-Incus-" if self.endpoint.flavour == "incus" else "X-LXD-"
        headers = {
            "Content-Type": "application/octet-stream",
            f"{prefix}type": "file",
            f"{prefix}mode": f"{mode:04o}",
            f"{prefix}uid": str(uid),
            f"{prefix}gid": str(gid),
            f"{prefix}write": "overwrite",
        }
        self._file_request(
            "POST", name, path, what=f"push {path} into '{name}'", body=content, headers=headers
        )

    def read_file(self, name: str, path: str) -> bytes:
        """The content of the file at `path` inside the instance; `LXDNotFoundError` if there is none."""
        data = self._file_request("GET", name, path, what=f"read {path} in '{name}'", raw=True).metadata
        return data if isinstance(data, bytes) else b""

    def _file_request(self, method: str, name: str, path: str, *, what: str, **kw: Any) -> Response:
        """One request to the instance's file API, sent again while LXD's file helper was exiting."""
        pauses = iter(FORKFILE_RETRY_PAUSES_S)
        while True:
            try:
                return self.request(
                    method, f"/1.0/instances/{_q(name)}/files", what=what, query={"path": path}, **kw
                )
            except LXDError as exc:
                pause = next(pauses, None)
                if pause is None or "forkfile.sock" not in exc.lxd_error:
                    raise
                time.sleep(pause)

    def exec(
        self,
        name: str,
        argv: list[str],
        *,
        env: Mapping[str, str] | None = None,
        timeout_s: float = OPERATION_TIMEOUT_S,
    ) -> ExecResult:
        """Run `argv` in the instance (no shell) and return its exit status and output."""
        what = f"run {argv[0] if argv else '?'} in '{name}'"
        body = {
            "command": argv,
            "environment": dict(env or {}),
            "wait-for-websocket": False,
            "interactive": False,
            "record-output": True,
        }
        result: Json = self.call(
            "POST", f"/1.0/instances/{_q(name)}/exec", what=what, json_body=body, wait_s=timeout_s
        )
        logs = result.get("output") or {}
        out = [self._exec_log(logs.get(fd), what) for fd in ("1", "2")]
        return ExecResult(int(result.get("return", -1)), out[0], out[1])

    def _exec_log(self, path: str | None, what: str) -> str:
        if not path:
            return ""
        data: bytes = self.request("GET", path, what=what, raw=True).metadata
        self.request("DELETE", path, what=what)  # the log lives until the instance does, otherwise
        return data.decode(errors="replace")

    # A stopped container's files are reachable too (LXD mounts its root file system): a new container
    # gets its directories, links and files before its first start, so it starts once, ready.

    def make_directory(self, name: str, path: str, *, mode: int = 0o755) -> None:
        """Make the directory `path` inside the instance (its parent must exist); nothing if it exists."""
        self._file_type_push(
            name, path, "directory", b"", what=f"make directory {path} in '{name}'", mode=mode
        )

    def make_symlink(self, name: str, path: str, target: str) -> None:
        """Make `path` inside the instance a symbolic link to `target`; nothing if it already is one.
        LXD refuses to replace anything else at `path` (see `delete_file`)."""
        self._file_type_push(name, path, "symlink", target.encode(), what=f"link {path} in '{name}'")

    def delete_file(self, name: str, path: str) -> None:
        """Remove the file or link `path` inside the instance; `LXDNotFoundError` when there is none."""
        self._file_request("DELETE", name, path, what=f"remove {path} in '{name}'")

    def _file_type_push(
        self, name: str, path: str, kind: str, body: bytes, *, what: str, mode: int | None = None
    ) -> None:
        # Sent again like any file request while LXD's file helper exits: both kinds are idempotent.
        prefix = "X-Incus-" if self.endpoint.flavour == "incus" else "X-LXD-"
        headers = {"Content-Type": "application/octet-stream", f"{prefix}type": kind}
        if mode is not None:
            headers |= {f"{prefix}mode": f"{mode:04o}", f"{prefix}uid": "0", f"{prefix}gid": "0"}
        self._file_request("POST", name, path, what=what, body=body, headers=headers)

    def add_device(self, name: str, device: str, config: Mapping[str, str]) -> None:
        """Add (or replace) one device of an instance, e.g. a `proxy_device(...)`."""
        self._edit_devices(
            name, f"add device '{device}' to '{name}'", lambda d: d.__setitem__(device, dict(config))
        )

    def remove_device(self, name: str, device: str) -> None:
        self._edit_devices(name, f"remove device '{device}' from '{name}'", lambda d: d.pop(device))

    def set_config(self, name: str, values: Mapping[str, str | None]) -> None:
        """Set (or, for None, remove) instance config keys, e.g. `limits.cpu.allowance`; live where LXD
        applies the key live (the cgroup limits are)."""
        what = f"set {', '.join(values)} of '{name}'"
        current = self.request("GET", f"/1.0/instances/{_q(name)}", what=what)
        data: Json = current.metadata
        config = dict(data.get("config") or {})
        for key, value in values.items():
            if value is None:
                config.pop(key, None)
            else:
                config[key] = value
        body = {
            key: data.get(key) for key in ("architecture", "devices", "profiles", "ephemeral", "description")
        }
        body["config"] = config
        headers = {"If-Match": current.etag} if current.etag else None
        self.call("PUT", f"/1.0/instances/{_q(name)}", what=what, json_body=body, headers=headers)

    def _edit_devices(self, name: str, what: str, edit: Any) -> None:
        # GET then PUT with the ETag: a concurrent change makes LXD refuse (412) instead of being lost.
        current = self.request("GET", f"/1.0/instances/{_q(name)}", what=what)
        data: Json = current.metadata
        devices = dict(data.get("devices") or {})
        edit(devices)
        body = {
            key: data.get(key) for key in ("architecture", "config", "profiles", "ephemeral", "description")
        }
        body["devices"] = devices
        headers = {"If-Match": current.etag} if current.etag else None
        self.call("PUT", f"/1.0/instances/{_q(name)}", what=what, json_body=body, headers=headers)

    # --- networks and profiles --------------------------------------------------------------------

    def networks(self) -> list[Json]:
        return self._list("/1.0/networks", "list networks")

    def create_network(self, name: str, config: Mapping[str, str], *, description: str = "") -> None:
        body = {"name": name, "type": "bridge", "config": dict(config), "description": description}
        self.call("POST", "/1.0/networks", what=f"create network '{name}'", json_body=body)

    def delete_network(self, name: str) -> None:
        self.call("DELETE", f"/1.0/networks/{_q(name)}", what=f"delete network '{name}'")

    def profiles(self) -> list[Json]:
        return self._list("/1.0/profiles", "list profiles")

    def create_profile(
        self,
        name: str,
        *,
        devices: Mapping[str, Mapping[str, str]] | None = None,
        config: Mapping[str, str] | None = None,
        description: str = "",
    ) -> None:
        body = {
            "name": name,
            "description": description,
            "config": dict(config or {}),
            "devices": {k: dict(v) for k, v in (devices or {}).items()},
        }
        self.call("POST", "/1.0/profiles", what=f"create profile '{name}'", json_body=body)

    def delete_profile(self, name: str) -> None:
        self.call("DELETE", f"/1.0/profiles/{_q(name)}", what=f"delete profile '{name}'")

    # --- images -----------------------------------------------------------------------------------

    def images(self) -> list[Json]:
        return self._list("/1.0/images", "list images")

    def image(self, fingerprint: str) -> Json:
        result: Json = self.call(
            "GET", f"/1.0/images/{_q(fingerprint)}", what=f"look up image {fingerprint[:12]}"
        )
        return result

    def import_image(self, tarball: Path, *, timeout_s: float = IMAGE_IMPORT_TIMEOUT_S) -> str:
        """Upload a unified image tarball (metadata.yaml, templates/, rootfs/); its fingerprint."""
        with open_binary(tarball) as handle:
            headers = {
                "Content-Type": "application/octet-stream",
                "Content-Length": str(os.fstat(handle.fileno()).st_size),
            }
            result: Json = self.call(
                "POST",
                "/1.0/images",
                what=f"import image {tarball.name}",
                body=handle,
                headers=headers,
                timeout_s=timeout_s,
                wait_s=timeout_s,
            )
        return str(result["fingerprint"])

    def delete_image(self, fingerprint: str) -> None:
        self.call("DELETE", f"/1.0/images/{_q(fingerprint)}", what=f"delete image {fingerprint[:12]}")

    def alias_target(self, alias: str) -> str | None:
        """The fingerprint an image alias points to, or None when there is no such alias."""
        from relevo.lxd.errors import LXDNotFoundError

        try:
            result = self.call(
                "GET", f"/1.0/images/aliases/{_q(alias)}", what=f"look up image alias '{alias}'"
            )
        except LXDNotFoundError:
            return None
        return str(result["target"])

    def set_alias(self, alias: str, fingerprint: str, *, description: str = "") -> None:
        """Point `alias` at `fingerprint`, creating it or moving it."""
        current = self.alias_target(alias)
        what = f"point image alias '{alias}' at {fingerprint[:12]}"
        if current is None:
            body = {"name": alias, "target": fingerprint, "description": description}
            self.call("POST", "/1.0/images/aliases", what=what, json_body=body)
        elif current != fingerprint:
            body = {"target": fingerprint, "description": description}
            self.call("PUT", f"/1.0/images/aliases/{_q(alias)}", what=what, json_body=body)

    def delete_alias(self, alias: str) -> None:
        self.call("DELETE", f"/1.0/images/aliases/{_q(alias)}", what=f"delete image alias '{alias}'")


def _q(name: str) -> str:
    """A name as one path segment: never a way to reach another endpoint."""
    return urllib.parse.quote(name, safe="")


def _is_fingerprint(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)
