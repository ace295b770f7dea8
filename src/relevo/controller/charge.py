"""The controller beside one balancer of a VM pair looks at its charge before every tick's actions
(acting.py's rule; this is what feeds it): keepalived's last word as the notify script wrote it, whether
the private NIC carries the VIP now, and whether the peer answers ARP for the VIP too (a split brain).

`relevo export vagrant` writes what to look at (CHARGE_FILE's JSON: the VIP, the NIC, the state file,
whether this is the topology's first balancer) and names it in RELEVO_VRRP_CHARGE for every relevo run
on the VM (its wrapper), so the controller's unit and a controller started by hand both follow it.
Without the variable a controller acts as it always did (one balancer, or LXD's host controller).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from relevo.controller import nic
from relevo.controller.acting import Charge, ChargeSeen, in_charge
from relevo.errors import RelevoError
from relevo.files import open_nofollow

LOG = logging.getLogger("relevo.controller")
ENVIRONMENT = "RELEVO_VRRP_CHARGE"
# How often an ARP probe asks who holds the VIP; a claim heard within CLAIM_FRESH_S is a split brain.
PEER_LOOK_S = 1.0
CLAIM_FRESH_S = 2.5 * PEER_LOOK_S


class Claims(Protocol):
    """Who else answers for the VIP (nic.ArpClaims; a fake in tests)."""

    def probe(self) -> None: ...

    def heard(self) -> bool: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargeSettings:
    vip: str
    nic: str
    state_file: Path  # keepalived's last word, as the notify script wrote it
    first: bool  # the topology's first balancer: the one that acts in a split brain

    def to_json(self) -> str:
        doc = {"vip": self.vip, "nic": self.nic, "state_file": str(self.state_file), "first": self.first}
        return json.dumps(doc, indent=2) + "\n"


def load_settings(path: Path) -> ChargeSettings:
    try:
        doc = json.loads(open_nofollow(path, limit=1 << 16))
        return ChargeSettings(
            vip=str(doc["vip"]), nic=str(doc["nic"]), state_file=Path(doc["state_file"]), first=doc["first"]
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RelevoError(
            f"{ENVIRONMENT}={path}: cannot read the balancer's charge settings ({exc}); expected the JSON "
            "`relevo export vagrant` writes (vip, nic, state_file, first)"
        ) from None


def from_environment() -> ChargeSettings | None:
    named = os.environ.get(ENVIRONMENT)
    return load_settings(Path(named)) if named else None


def read_word(path: Path) -> str | None:
    """keepalived's last state word (None: the notify script has written none yet)."""
    try:
        return open_nofollow(path, limit=256).decode().strip() or None
    except FileNotFoundError:
        return None
    except OSError as exc:  # unreadable is no word: not in charge, and said
        LOG.warning("cannot read keepalived's state word in %s: %s", path, exc)
        return None


class ChargeWatch:
    """One look per call (`look()`, then acting.in_charge); what each part of the look reads is injected
    (the real readers by default), as is the clock."""

    def __init__(
        self,
        settings: ChargeSettings,
        *,
        word: Callable[[], str | None] | None = None,
        addresses: Callable[[], set[str]] | None = None,
        claims: Claims | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._word = word or (lambda: read_word(settings.state_file))
        self._addresses = addresses or (lambda: nic.ipv4_addresses(settings.nic))
        self._claims = claims
        self._clock = clock
        self._probed_at: float | None = None
        self._claimed_at: float | None = None

    def look(self) -> ChargeSeen:
        word = self._word()
        try:
            carries = self.settings.vip in self._addresses()
        except OSError as exc:
            LOG.warning("cannot read %s's addresses: %s", self.settings.nic, exc)
            carries = False  # not known to carry it: not in charge
        return ChargeSeen(word=word, carries_vip=carries, peer_claims=self._peer_claims())

    def _peer_claims(self) -> bool:
        """An answer for the VIP from another MAC within CLAIM_FRESH_S (a probe sent every PEER_LOOK_S)."""
        if self._claims is None:
            return False
        now = self._clock()
        try:
            if self._claims.heard():
                self._claimed_at = now
            if self._probed_at is None or now - self._probed_at >= PEER_LOOK_S:
                self._claims.probe()
                self._probed_at = now
        except OSError as exc:
            LOG.warning("the ARP look for %s failed: %s", self.settings.vip, exc)
        return self._claimed_at is not None and now - self._claimed_at < CLAIM_FRESH_S

    def __call__(self) -> Charge:
        return in_charge(self.look(), first=self.settings.first)

    def close(self) -> None:
        if self._claims is not None:
            self._claims.close()


def watch(settings: ChargeSettings) -> ChargeWatch:
    """The watch with the real readers; without an ARP socket (not root) the split brain goes unseen, and
    the log says so once."""
    claims: Claims | None = None
    try:
        claims = nic.ArpClaims(settings.nic, settings.vip)
    except OSError as exc:
        LOG.warning("no ARP look for a split brain on %s: %s", settings.nic, exc)
    return ChargeWatch(settings, claims=claims)
