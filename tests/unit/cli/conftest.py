"""The small local HTTP servers of the load generator's tests, for the command line's tests too."""

from ..loadgen.conftest import free_port, serve

__all__ = ["free_port", "serve"]
