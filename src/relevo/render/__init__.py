"""Renderers: plain data in, configuration text out (Jinja2, strict about undefined names)."""

from __future__ import annotations

import re
from functools import cache

import jinja2

from relevo.model import Endpoint


def ms(seconds: float) -> int:
    """A duration in whole milliseconds, as HAProxy's timeouts and intervals take it."""
    return max(1, round(seconds * 1000))


def bind(endpoint: Endpoint) -> str:
    """address:port as HAProxy's `bind`/`server` and Apache's `Listen` take it (IPv6 in brackets)."""
    if ":" in endpoint.address:
        return f"[{endpoint.address}]:{endpoint.port}"
    return f"{endpoint.address}:{endpoint.port}"


@cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("relevo.render", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - configuration files, not HTML for a browser
    )
    env.globals.update(ms=ms, bind=bind)
    env.filters["regex_escape"] = re.escape
    return env


def render_template(name: str, **context: object) -> str:
    return environment().get_template(name).render(**context)
