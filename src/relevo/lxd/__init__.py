"""LXD: a thin typed REST client and the base image relevo builds for it."""
