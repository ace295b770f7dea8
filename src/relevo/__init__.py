"""relevo: build, run, break and measure a load-balanced web cluster with automatic failover."""

__version__ = "0.1.0"
