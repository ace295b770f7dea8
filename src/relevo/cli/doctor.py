"""`relevo doctor`: what this machine lacks for relevo, and the command that fixes each thing."""

from __future__ import annotations

import textwrap
from dataclasses import asdict

import click

from relevo.cli.common import file_option, get_topology, print_json
from relevo.errors import RelevoError

WIDTH = 80


@click.command()
@file_option
@click.option(
    "--lxd/--no-lxd",
    "everything",
    default=None,
    help="Count the LXD checks in the exit status (default: when the topology's provider is lxd).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON on stdout.")
@click.pass_context
def doctor(ctx: click.Context, everything: bool | None, as_json: bool) -> None:
    """Check HAProxy and Apache, the image build tools, and LXD: the daemon, this user's access to it,
    a storage pool and the base image; and the topology's addresses and ports: each one relevo would
    listen on is free (else which process holds it), and for LXD the bridge's subnet, the containers'
    names and addresses. Each missing thing comes with the command that fixes it.

    Only looks: starts, creates and changes nothing. Exit status 1 when something the topology needs is
    missing (the LXD checks count with --lxd or `provider: lxd`), else 0.
    """
    from relevo import doctor_addresses
    from relevo.doctor import Check, counted_groups, machine_checks

    try:
        topology = get_topology(ctx)
    except RelevoError as exc:
        checks = machine_checks()
        checks.append(Check(name="topology", ok=False, detail=str(exc).splitlines()[0], group="local"))
        counted = counted_groups(None, everything=everything)
    else:
        # The providers' own checks of the topology come through doctor_addresses (each provider's).
        checks = machine_checks(topology) + doctor_addresses.topology_checks(topology)
        counted = counted_groups(topology, everything=everything)
    failed = [c for c in checks if not c.ok and c.group in counted]
    if as_json:
        print_json(
            {"ok": not failed, "checks": [asdict(c) | {"counted": c.group in counted} for c in checks]}
        )
    else:
        for check in checks:
            mark = "ok  " if check.ok else ("FAIL" if check.group in counted else "miss")
            lines = textwrap.wrap(check.detail, WIDTH - 20) or [""]
            click.echo(f"{mark} {check.name:<14} {lines[0]}")
            for more in lines[1:]:
                click.echo(f"{'':20}{more}")
            if not check.ok and check.fix:
                fix = textwrap.wrap(check.fix, WIDTH - 10) or [""]
                click.echo(f"{'':5}fix: {fix[0]}")
                for more in fix[1:]:
                    click.echo(f"{'':10}{more}")
    if failed:
        raise SystemExit(1)
