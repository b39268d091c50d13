"""The ``browser`` fixture: a fresh headless Chromium per test (see ``browser.py``).

When a test that used it fails, the page it was on is saved as
``artifacts/screenshots/FAILED-<test>.png`` before the browser is quit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from browser import chromium, screenshot
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
