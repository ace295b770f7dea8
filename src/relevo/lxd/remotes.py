"""Which LXD daemon a topology names: `local` (or nothing) is this host's unix socket; any other name is
a remote as `lxc remote add NAME https://HOST:8443` recorded it in lxc's configuration directory
($LXD_CONF, else ~/.config/lxc): its address in config.yml, this client's certificate and key beside it,
and the server's certificate in servercerts/NAME.crt, which relevo pins."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from relevo.errors import ProviderError
from relevo.files import open_nofollow
from relevo.lxd.transport import APIEndpoint


def lxc_config_dir() -> Path:
    configured = os.environ.get("LXD_CONF")
    return Path(configured) if configured else Path.home() / ".config" / "lxc"


def endpoint_for(remote: str | None, project: str | None = None) -> APIEndpoint:
    """The APIEndpoint for `remote` (None or "local": the local socket), scoped to `project`."""
    if remote in (None, "local"):
        return APIEndpoint.local(project=project)
    directory = lxc_config_dir()
    config_file = directory / "config.yml"
    try:
        config = yaml.safe_load(open_nofollow(config_file, limit=1 << 20)) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ProviderError(
            f"LXD remote {remote!r}: cannot read {config_file} ({exc}); add it with "
            f"`lxc remote add {remote} https://HOST:8443`"
        ) from None
    entry = (config.get("remotes") or {}).get(remote) if isinstance(config, dict) else None
    address = entry.get("addr") if isinstance(entry, dict) else None
    if not isinstance(address, str) or not address.startswith("https://"):
        raise ProviderError(
            f"LXD remote {remote!r}: {config_file} names no HTTPS remote by that name; add it with "
            f"`lxc remote add {remote} https://HOST:8443`"
        )
    server_cert = directory / "servercerts" / f"{remote}.crt"
    client_cert, client_key = directory / "client.crt", directory / "client.key"
    for needed in (server_cert, client_cert, client_key):
        if not needed.is_file():
            raise ProviderError(f"LXD remote {remote!r}: {needed} is missing (`lxc remote add` writes it)")
    return APIEndpoint(
        url=address,
        client_cert=client_cert,
        client_key=client_key,
        server_cert=server_cert,
        project=project,
    )
