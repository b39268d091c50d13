"""The groups, group and member pages in headless Chromium against a live service: a VO
admin creates a group and a role, adds a member to the group and names its manager, sets
the member's expiry and role; the manager finds the group on their home page. Every page
keeps a clean console; screenshots in artifacts/screenshots/portal-{groups,group,member}.png."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from browser import console_problems, fill, screenshot, submit, text, wait_for
from e2e.live import Live, live_service
from flask import Flask
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from test_portal_browser import _seed, sign_in

from vo_service.authz import Actor
from vo_service.context import ServiceContext
from vo_service.db import db
from vo_service.memberships.services import MembershipService
from vo_service.timeutil import today
from vo_service.users.services import UserService
from vo_service.vos.services import VOService


def _seed_groups(app: Flask) -> None:
    """The portal browser test's seed (alice administers atlas, which has
    /atlas/analysis; erin is a member; dave is in no VO) and erin in /atlas/analysis."""
    _seed(app)
    with app.app_context():
        ctx = ServiceContext.build(db.session, app.config)
        system = Actor.system("groups-browser")
        vos = VOService(ctx)
        atlas = vos.get("atlas")
        MembershipService(ctx).add_to_group(system, atlas, vos.group(atlas, "/atlas/analysis"),
                                            UserService(ctx).get("erin"))
        db.session.commit()
        db.session.remove()


@pytest.fixture(scope="module")
def live(instance_path: str) -> Iterator[Live]:
    with live_service(_seed_groups, prefix="xos-groups-browser-") as service:
        yield service


def test_groups_a_member_and_an_expiry(live: Live, browser: WebDriver) -> None:
    sign_in(browser, live, "alice")
    browser.get(live.base + "/vos/atlas/groups")
    wait_for(browser, "input[name=path]")
    fill(browser, "path", "/atlas/analysis/higgs")
    fill(browser, "description", "Higgs boson searches")
    submit(browser, "Create group")
    assert "Group /atlas/analysis/higgs created" in text(browser)
    fill(browser, "role", "production")
    fill(browser, "role_description", "Runs the experiment's production jobs")
    submit(browser, "Create role")
    assert "Role /atlas/Role=production created." in text(browser)
    assert "/atlas/analysis/higgs" in text(browser) and "Higgs boson searches" in text(browser)
    screenshot(browser, "portal-groups")
    # the new group: erin in, dave its manager
    browser.find_element(By.LINK_TEXT, "/atlas/analysis/higgs").click()
    wait_for(browser, "#member-username")
    fill(browser, "username", "erin")  # the first user name field: the member's
    submit(browser, "Add to group")
    assert "erin added to /atlas/analysis/higgs." in text(browser)
    field = browser.find_element(By.ID, "manager-username")
    field.send_keys("dave")
    submit(browser, "Make manager")
    assert "dave now manages /atlas/analysis/higgs." in text(browser)
    screenshot(browser, "portal-group")
    # erin's page: an expiry a year ahead and the production role
    browser.get(live.base + "/vos/atlas/members")
    wait_for(browser, "table")
    browser.find_element(By.LINK_TEXT, "erin").click()
    wait_for(browser, "input[name=expires_on]")
    day = (today() + dt.timedelta(days=365)).isoformat()
    date = browser.find_element(By.NAME, "expires_on")
    browser.execute_script("arguments[0].value = arguments[1]", date, day)  # locale-free
    submit(browser, "Set expiry")
    assert f"now expires on {day}" in text(browser)
    submit(browser, "Assign")
    assert "erin now holds /atlas/Role=production." in text(browser)
    assert "/atlas/analysis/higgs" in text(browser)
    screenshot(browser, "portal-member")
    assert console_problems(browser) == []
    # dave finds his group on his home page and may open it
    sign_in(browser, live, "dave")
    assert "Groups I manage" in text(browser)
    browser.find_element(By.LINK_TEXT, "/atlas/analysis/higgs").click()
    wait_for(browser, "#member-username")
    assert "erin" in text(browser) and "Make manager" not in text(browser)
    assert console_problems(browser) == []
