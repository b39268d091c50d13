"""The ``browser`` fixture: a fresh headless Chromium per test (see ``browser.py``), and
the ``portal`` fixture: a seeded service for the test client (see ``portal_support``).

When a test that used it fails, the page it was on is saved as
``artifacts/screenshots/FAILED-<test>.png`` before the browser is quit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from browser import chromium, screenshot
from flask import Flask
from portal_support import seeded_portal
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.webdriver import WebDriver

_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


@pytest.fixture
def browser(request: pytest.FixtureRequest) -> Iterator[WebDriver]:
    with chromium() as driver:
        yield driver
        if request.node.stash.get(_FAILED, False):
            with contextlib.suppress(WebDriverException):  # a dead browser shows nothing
                screenshot(driver, f"FAILED-{request.node.name}")


@pytest.fixture
def portal() -> Iterator[Flask]:
    """A seeded service with a portal (see ``portal_support``). Not named ``app``:
    pytest-flask would push one request context around the whole test, and every test
    client request would share its ``g``, signed-in user and CSRF token included."""
    with seeded_portal() as app:
        yield app
