"""Frozen standbys on LXD: the standbys' containers started ahead of time and frozen (`freeze`); a
forced stop of web1 under open-loop load is served by the thawed web1bck with no failed request; web1
started again: web1bck drained and frozen again. Everything this module creates is destroyed at its
end."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from relevo import lifecycle
from relevo.controller import daemon
from relevo.lxd.client import LXDClient
from relevo.providers.base import Fault

from .conftest import (
    LXDCluster,
    TierImage,
    assert_no_failures,
    finish,
    open_load,
    served,
    up_on_lxd,
    wait_until,
)

pytestmark = [pytest.mark.lxd, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def frozen_cluster(
    lxd: LXDClient, tier_image: TierImage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LXDCluster]:
    """The seed's five nodes as containers with frozen standbys, up, both standbys frozen; destroyed at
    the end whatever happened."""
    body = (
        "standby: {temperature: frozen, hold: 1s}\n"
        "nodes:\n  web1: {role: web}\n  web2: {role: web}\n"
        "  web1bck: {role: standby, standby_for: web1}\n  web2bck: {role: standby, standby_for: web2}\n"
    )
    with up_on_lxd(lxd, tier_image, tmp_path_factory.mktemp("lxd-frozen"), "rf", body) as up:
        running = LXDCluster.of(up, lxd)
        wait_until(
            lambda: running.statuses()["web1bck"] == "Frozen" and running.statuses()["web2bck"] == "Frozen",
            "both standbys are frozen",
            timeout_s=120,
            explain=running.explain,
        )
        yield running


def test_a_forced_stop_is_served_by_the_thawed_standby_which_is_frozen_again(
    frozen_cluster: LXDCluster,
) -> None:
    """Under open-loop load: web1 force-stopped → web1bck thawed (never started) and serving, 0 failed;
    web1 started again → web1bck drained and frozen again, 0 failed."""
    running = frozen_cluster
    with open_load(running.url) as load:
        wait_until(lambda: served(load, "web1") > 20 and served(load, "web2") > 20, "both primaries serve")
        running.cluster.fault("web1", Fault.CRASH)
        wait_until(lambda: served(load, "web1bck") > 20, "web1bck serves clients", explain=running.explain)
        assert running.statuses()["web1bck"] == "Running"
        result = finish(load)
    assert_no_failures(result)
    events = daemon.recent_events(running.topology, 100, include_actions=True)
    down = [e for e in events if (e["kind"], e["node"], e["to"]) == ("health", "web1", "down")]
    # LXD's listing shows the container stopped about when its lifecycle event is sent: whichever the
    # controller saw first is what the journal names (the event source, or the tick's listing).
    assert down and down[-1]["reason"] in ("instance-stopped (first heard by lxd-events)", "process stopped")
    steps = [(e["from"], e["to"]) for e in events if e["kind"] == "action" and e["node"] == "web1bck"]
    assert ("thawing", "running") in steps and ("starting", "running") not in steps, steps
    with open_load(running.url) as load:
        wait_until(lambda: served(load, "web1bck") > 20, "web1bck serves the load")
        lifecycle.locked_start(running.cluster, "web1")
        wait_until(
            lambda: running.statuses()["web1bck"] == "Frozen",
            "web1bck is drained and frozen again",
            explain=running.explain,
        )
        before = served(load, "web1")
        wait_until(lambda: served(load, "web1") > before + 20, "web1 serves again")
        result = finish(load)
    assert_no_failures(result)
