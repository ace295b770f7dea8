"""What runs on a node, whatever hosts it: HAProxy on the balancer, Apache on each web node.

A service renders its files for a layout (where its files live on the node: the state directory for the
local provider, fixed paths inside a container), names the argv that checks them and the one that
reloads, and leaves *where* they go to a provider's `Host` (put a file, run an argv).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath


@dataclass(frozen=True, slots=True)
class NodeFile:
    """One file a service needs on its node: where, what, and who may read it."""

    path: PurePosixPath
    content: str
    mode: int = 0o644
