"""The service admin's pages in headless Chromium against a live service: create a VO,
name its admin, register a node for it and make the node's one-time enrolment token,
with a clean console. Screenshots: portal-admin.png, portal-admin-nodes.png."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from browser import console_problems, fill, screenshot, submit, text, wait_for
from e2e.live import Live, live_service
from flask import Flask
from selenium.webdriver.chrome.webdriver import WebDriver
from test_portal_browser import PASSWORD, sign_in

from vo_service.auth.passwords import PasswordService
from vo_service.authz import Actor
from vo_service.context import ServiceContext
from vo_service.db import db
from vo_service.users.services import UserService
from vo_service.vos.services import VOService


def _seed(app: Flask) -> None:
    """gridops is a service admin; atlas exists; alice will administer the new VO."""
    with app.app_context():
        ctx = ServiceContext.build(db.session, app.config)
        system = Actor.system("admin-browser")
        VOService(ctx).create(system, "atlas", "ATLAS experiment")
        for name, display, root in (("gridops", "Grid Operations", True),
                                    ("alice", "Alice Liddell", False)):
            user = UserService(ctx).create(system, name, display, is_service_admin=root)
            PasswordService(ctx).set(system, user, PASSWORD)
        db.session.commit()
        db.session.remove()


@pytest.fixture(scope="module")
def live(instance_path: str) -> Iterator[Live]:
    with live_service(_seed, prefix="xos-admin-browser-") as service:
        yield service


def test_service_admin_creates_a_vo_and_enrols_a_node(live: Live, browser: WebDriver) -> None:
    sign_in(browser, live, "gridops")
    browser.get(live.base + "/admin")
    wait_for(browser, "input[name=name]")
    fill(browser, "name", "lhcb")
    fill(browser, "description", "LHCb experiment")
    submit(browser, "Create")
    assert "VO lhcb created." in text(browser)
    fill(browser, "vo", "lhcb")
    fill(browser, "username", "alice")
    submit(browser, "Make admin")
    assert "alice now administers lhcb." in text(browser)
    screenshot(browser, "portal-admin")
    browser.get(live.base + "/admin/nodes")
    wait_for(browser, "input[name=node]")
    fill(browser, "node", "wn1.grid.example")
    fill(browser, "description", "worker node, rack 3")
    fill(browser, "vos", "atlas, lhcb")
    submit(browser, "Register")
    assert "Node wn1.grid.example registered" in text(browser)
    submit(browser, "Enrolment token")
    assert re.search(r"xet_[A-Za-z0-9_-]{20,}", text(browser))
    screenshot(browser, "portal-admin-nodes")
    assert console_problems(browser) == []
