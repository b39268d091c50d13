"""The portal in headless Chromium, against a live service: the whole path from a
membership request to an approved device login for xos-login, a VO admin suspending a
member, and a clean console (no script error, no CSP violation) on every page. The main
pages are kept as screenshots in artifacts/screenshots/portal-*.png."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from browser import console_problems, fill, screenshot, submit, text, wait_for
from e2e.live import Live, live_service
from flask import Flask
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from test_browser_harness import poll_token, start_device_login

from vo_service.auth.passwords import PasswordService
from vo_service.authz import Actor
from vo_service.context import ServiceContext
from vo_service.db import db
from vo_service.memberships.services import MembershipService
from vo_service.nodes.services import NodeService
from vo_service.users.services import UserService
from vo_service.vos.services import VOService

PASSWORD = "correct horse battery"


def _seed(app: Flask) -> None:
    """alice administers atlas; dave is new and belongs to no VO yet."""
    with app.app_context():
        ctx = ServiceContext.build(db.session, app.config)
        system = Actor.system("portal-browser")
        vos = VOService(ctx)
        atlas = vos.create(system, "atlas", "ATLAS experiment")
        vos.create_group(system, atlas, "/atlas/analysis")
        users = {name: UserService(ctx).create(system, name, display)
                 for name, display in (("alice", "Alice Liddell"), ("dave", "Dave Newcomer"),
                                       ("erin", "Erin Member"))}
        for user in users.values():
            PasswordService(ctx).set(system, user, PASSWORD)
        vos.set_admin(system, atlas, users["alice"], True)
        MembershipService(ctx).add(system, atlas, users["alice"])
        MembershipService(ctx).add(system, atlas, users["erin"])
        NodeService(ctx).register(system, "wn1.grid.example", vos=["atlas"])
        db.session.commit()
        db.session.remove()


@pytest.fixture(scope="module")
def live(instance_path: str) -> Iterator[Live]:
    with live_service(_seed, prefix="xos-portal-browser-", DEVICE_POLL_SECONDS=1) as service:
        yield service


def sign_in(browser: WebDriver, live: Live, user: str) -> None:
    browser.delete_all_cookies()
    browser.get(live.base + "/signin")
    wait_for(browser, "input[name=username]")
    fill(browser, "username", user)
    fill(browser, "password", PASSWORD)
    submit(browser, "Sign in")
    wait_for(browser, lambda d: "/home" in d.current_url)


def test_request_approval_and_device_login(live: Live, browser: WebDriver) -> None:
    # dave asks to join atlas
    sign_in(browser, live, "dave")
    assert "You are not a member of any VO yet." in text(browser)
    fill(browser, "vo", "atlas")
    fill(browser, "reason", "Higgs analysis")
    submit(browser, "Ask to join")
    assert "waiting for its VO admins" in text(browser)
    assert "pending" in text(browser)
    screenshot(browser, "portal-home-pending")
    # alice, atlas's admin, approves him from the pending list
    sign_in(browser, live, "alice")
    screenshot(browser, "portal-home-admin")
    browser.get(live.base + "/vos/atlas/members?status=pending")
    wait_for(browser, "input[name=users]")
    assert "Higgs analysis" in text(browser)
    screenshot(browser, "portal-members-pending")
    browser.find_element(By.CSS_SELECTOR, "input[name=users][value=dave]").click()
    submit(browser, "Approve selected")
    assert "Approve: dave." in text(browser)
    # dave approves a device login for xos-login
    discovery, device = start_device_login(live)
    sign_in(browser, live, "dave")
    assert "active" in text(browser) and "/atlas" in text(browser)
    screenshot(browser, "portal-home-member")
    browser.get(device["verification_uri"])
    wait_for(browser, "form input[name=user_code]")
    fill(browser, "user_code", device["user_code"])
    fill(browser, "username", "dave")
    fill(browser, "password", PASSWORD)
    submit(browser, "Approve")
    assert "Approved" in text(browser)
    status, answer = poll_token(discovery, device["device_code"])
    assert status == 200 and answer["token_type"].lower() == "bearer"
    # the login is listed on dave's logins page
    browser.get(live.base + "/sessions")
    wait_for(browser, "table")
    assert "xos-login" in text(browser)
    screenshot(browser, "portal-sessions")
    assert console_problems(browser) == []


def test_an_admin_suspends_a_member(live: Live, browser: WebDriver) -> None:
    sign_in(browser, live, "alice")
    browser.get(live.base + "/vos/atlas/members?q=erin")
    wait_for(browser, "input[name=users][value=erin]")
    browser.find_element(By.CSS_SELECTOR, "input[name=users][value=erin]").click()
    fill(browser, "reason", "left the collaboration")
    submit(browser, "Suspend selected")
    assert "Suspend: erin." in text(browser)
    assert "suspended" in text(browser)
    screenshot(browser, "portal-members-suspended")
    browser.get(live.base + "/vos/atlas/audit?action=membership.")
    wait_for(browser, "table")
    assert "membership.suspend" in text(browser) and "user:alice" in text(browser)
    screenshot(browser, "portal-audit")
    browser.get(live.base + "/vos/atlas/nodes")
    wait_for(browser, "table")
    assert "wn1.grid.example" in text(browser)
    screenshot(browser, "portal-nodes")
    assert console_problems(browser) == []
    # erin's own page says so
    sign_in(browser, live, "erin")
    assert "suspended" in text(browser)
