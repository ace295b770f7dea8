"""A Chromium page logged in to relevo's dashboard (Playwright): the one place the tests build it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page


def logged_in_page(browser: Browser, user: str, password: str) -> Page:
    """A new page, in a context of its own at 1280 x 900 px that answers the dashboard's HTTP basic
    challenge with `user` and `password`; not opened on any address yet (`page.context.close()` ends it)."""
    context = browser.new_context(
        http_credentials={"username": user, "password": password},
        viewport={"width": 1280, "height": 900},
    )
    return context.new_page()
