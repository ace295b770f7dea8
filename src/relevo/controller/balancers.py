"""Every HAProxy of the cluster as one `BalancerControl`: a pair's two, or the seed's one.

The loop reads one view and sets server states as before; this fans each command out to every balancer
that answers, so the pair's two HAProxy processes serve with the same states whichever one a client
reaches. The view is the incumbent's (the first balancer that answered in the previous read too): a
balancer that has just come back answers with what it started from, and is corrected to the incumbent's
admin states before its view counts (`sync`). A balancer that does not answer is skipped: it gets the
states when it returns, from the server-state file saved before its restart and from `sync`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from relevo.controller.events import Event, EventKind
from relevo.controller.haproxy_view import BalancerControl, PolledBalancer
from relevo.controller.state import ServerView
from relevo.errors import RuntimeAPIError
from relevo.haproxy.runtime import AdminState

LOG = logging.getLogger("relevo.controller")


@dataclass(frozen=True, slots=True, kw_only=True)
class Synced:
    """A returning balancer's admin states set to the incumbent's."""

    balancer: str
    source: str
    servers: Mapping[str, AdminState]


class BalancerSet:
    """The `BalancerControl` of every HAProxy of the cluster, in the topology's order (the first
    balancer first)."""

    def __init__(self, members: Mapping[str, BalancerControl]) -> None:
        if not members:
            raise ValueError("a balancer set needs at least one balancer")
        self.members = dict(members)
        self.answering: dict[str, bool] = dict.fromkeys(self.members, True)
        self.synced: list[Synced] = []  # what `sync` did since the loop last took it (journalled)

    def view(self) -> Mapping[str, ServerView]:
        for member in self.members.values():
            if isinstance(member, PolledBalancer):
                member.ask()  # every balancer read at once: one hung HAProxy costs one wait, not two
        views: dict[str, Mapping[str, ServerView]] = {}
        errors: list[str] = []
        for name, member in self.members.items():
            try:
                views[name] = member.view()
            except Exception as exc:  # any failure to read one HAProxy: that one is not answering
                errors.append(f"{name}: {exc}")
        before = self.answering
        self.answering = {name: name in views for name in self.members}
        if not views:
            raise RuntimeAPIError("no balancer answers: " + "; ".join(errors))
        incumbent = next((n for n in views if before.get(n)), next(iter(views)))
        for name, seen in views.items():
            if name != incumbent:
                self.sync(name, seen, incumbent, views[incumbent])
        return views[incumbent]

    def sync(
        self, name: str, seen: Mapping[str, ServerView], source: str, truth: Mapping[str, ServerView]
    ) -> None:
        """Set `name`'s admin states to the incumbent's where they differ (a returning balancer started
        from an older server-state file, or missed a command while it did not answer)."""
        wrong = {
            server: view.admin
            for server, view in truth.items()
            if server in seen and seen[server].admin is not view.admin
        }
        member = self.members[name]
        for server, admin in wrong.items():
            try:
                member.set_state(server, admin)
                if admin is AdminState.READY and truth[server].up:
                    member.health_up(server)  # no `rise` checks to wait out on the returning one
            except Exception as exc:  # it did not take the command: it is tried again next read
                LOG.warning("could not give %s %s's state of %s: %s", name, source, server, exc)
                return
        if wrong:
            self.synced.append(Synced(balancer=name, source=source, servers=wrong))

    def _each(self, what: str, command: str, call: Callable[[BalancerControl], None]) -> None:
        """Run a command on every balancer that answered the last read (at least one must take it)."""
        done = 0
        errors: list[str] = []
        targets = [n for n, up in self.answering.items() if up] or list(self.members)
        for name in targets:
            try:
                call(self.members[name])
                done += 1
            except Exception as exc:
                errors.append(f"{name}: {exc}")
        if not done:
            raise RuntimeAPIError(f"{command} {what}: no balancer took it: " + "; ".join(errors))
        for error in errors:
            LOG.warning("%s %s: %s", command, what, error)

    def set_state(self, server: str, state: AdminState) -> None:
        self._each(server, f"set state {state}", lambda member: member.set_state(server, state))

    def health_up(self, server: str) -> None:
        self._each(server, "set health up", lambda member: member.health_up(server))

    def save(self) -> None:
        """The incumbent's states saved (each balancer reads the same file when it starts)."""
        errors: list[str] = []
        for name, member in self.members.items():
            if not self.answering.get(name):
                continue
            try:
                member.save()
                return
            except Exception as exc:
                errors.append(f"{name}: {exc}")
        raise RuntimeAPIError("no balancer saved its server states: " + "; ".join(errors))

    def take_synced(self) -> list[Synced]:
        found, self.synced = self.synced, []
        return found

    def close(self) -> None:
        for member in self.members.values():
            if isinstance(member, PolledBalancer):
                member.close()


# -- the loop's hooks: small, so the loop stays about one balancer ----------------------------------------
def answering(balancer: BalancerControl, first: str, haproxy: bool) -> dict[str, bool]:
    """Which balancers answered the last read: each of a set's, or the one balancer's."""
    if isinstance(balancer, BalancerSet):
        return dict(balancer.answering)
    return {first: haproxy}


def synced_events(balancer: BalancerControl) -> list[Event]:
    """Journal entries for the states a returning balancer was given."""
    if not isinstance(balancer, BalancerSet):
        return []
    return [
        Event(
            kind=EventKind.BALANCER,
            node=done.balancer,
            from_="returned",
            to="synced",
            reason=f"given {done.source}'s states: "
            + ", ".join(f"{server} {state}" for server, state in sorted(done.servers.items())),
        )
        for done in balancer.take_synced()
    ]


def save_for_restart(balancer: BalancerControl, restarting: str) -> None:
    """Before a balancer of a pair is started again: save the states of one that answers (not the one
    restarting), so the new HAProxy starts from the current states before it takes a connection."""
    if isinstance(balancer, BalancerSet) and any(
        up for name, up in balancer.answering.items() if name != restarting
    ):
        balancer.save()
