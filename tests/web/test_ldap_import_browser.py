"""The LDAP import page in headless Chromium against a live service and a real slapd
(tests/ldap_import_directory.py): a VO admin previews an import, with the directory's
hostile values shown as text, then imports it; a clean console throughout. The preview
is kept as artifacts/screenshots/portal-ldap-import.png."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from browser import console_problems, fill, screenshot, submit, text, wait_for
from e2e.live import Live, live_service
from e2e.slapd import Slapd
from flask import Flask
from ldap_import_directory import SCRIPT, group_dn, loaded_directory, mapping, settings
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from test_portal_browser import sign_in

from vo_service.auth.passwords import PasswordService
from vo_service.authz import Actor
from vo_service.context import ServiceContext
from vo_service.db import db
from vo_service.memberships.services import MembershipService
from vo_service.users.services import UserService
from vo_service.vos.services import VOService

PASSWORD = "correct horse battery"


def _seed(app: Flask) -> None:
    """alice administers atlas (a local account, not in the directory's VO group)."""
    with app.app_context():
        ctx = ServiceContext.build(db.session, app.config)
        system = Actor.system("ldap-import-browser")
        atlas = VOService(ctx).create(system, "atlas", "ATLAS experiment")
        alice = UserService(ctx).create(system, "alice", "Alice Liddell")
        PasswordService(ctx).set(system, alice, PASSWORD)
        VOService(ctx).set_admin(system, atlas, alice, True)
        MembershipService(ctx).add(system, atlas, alice)
        db.session.commit()
        db.session.remove()


@pytest.fixture(scope="module")
def directory() -> Iterator[Slapd]:
    with loaded_directory() as server:
        yield server


@pytest.fixture(scope="module")
def live(instance_path: str, directory: Slapd) -> Iterator[Live]:
    with live_service(_seed, prefix="xos-ldap-import-browser-",
                      **settings(directory)) as service:
        yield service


def test_an_admin_previews_and_imports(live: Live, browser: WebDriver,
                                       directory: Slapd) -> None:
    sign_in(browser, live, "alice")
    browser.get(live.base + "/vos/atlas/ldap-import")
    wait_for(browser, "textarea[name=mapping]")
    fill(browser, "members_group", group_dn(directory, "atlas-members"))
    fill(browser, "mapping", "\n".join(f"{dn}={path}" for dn, path in mapping(directory)))
    submit(browser, "Preview")
    wait_for(browser, "ul.stats")
    shown = text(browser)
    assert "6 users to create" in shown.replace("\n", " ")
    assert SCRIPT in shown  # shown as text, never run
    assert browser.find_elements(By.CSS_SELECTOR, "main script") == []
    assert "exists and is not linked" in shown  # alice: local, so a conflict
    assert "held by more than one directory entry" in shown
    screenshot(browser, "portal-ldap-import")
    submit(browser, "Import these 9 changes")
    assert "Imported into atlas: 9 changes" in text(browser)
    browser.get(live.base + "/vos/atlas/members?q=dave")
    wait_for(browser, "table")
    assert "/atlas/posix" in text(browser)
    assert console_problems(browser) == []
