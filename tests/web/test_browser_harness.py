"""The browser harness, end to end: headless Chromium approves a real device login.

Why: the portal's tests will trust this harness to start Debian's Chromium without a
download, to keep screenshots where CI can find them, to report CSP violations and JS
errors, and to leave no browser process behind. So it is proven here on the service that
exists today: a VO service on loopback starts a device authorization (as ``xos-login``
would), and the user approves it on the ``/device`` page by typing the code and the
password into the browser; the device then gets a token that verifies as the user's.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from browser import (
    SCREENSHOTS,
    WINDOW,
    browser_processes,
    chromium,
    console_problems,
    csp_violations,
    fill,
    png_size,
    safe_name,
    screenshot,
    still_running,
    submit,
    text,
    wait_for,
)
from e2e.live import Live, live_service
from flask import Flask
from selenium.webdriver.chrome.webdriver import WebDriver

import xos_tokens
from vo_service.auth.passwords import PasswordService
from vo_service.authz import Actor
from vo_service.context import ServiceContext
from vo_service.db import db
from vo_service.memberships.services import MembershipService
from vo_service.users.services import UserService
from vo_service.vos.services import VOService

PASSWORD = "correct horse battery"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _seed(app: Flask) -> None:
    """alice, active in atlas (a token is only for a VO member), with a password."""
    with app.app_context():
        ctx = ServiceContext.build(db.session, app.config)
        system = Actor.system("web-harness")
        alice = UserService(ctx).create(system, "alice", "Alice")
        PasswordService(ctx).set(system, alice, PASSWORD)
        MembershipService(ctx).add(system, VOService(ctx).create(system, "atlas"), alice)
        db.session.commit()
        db.session.remove()


@pytest.fixture(scope="module")
def live(instance_path: str) -> Iterator[Live]:
    with live_service(_seed, prefix="xos-web-harness-", DEVICE_POLL_SECONDS=1) as service:
        yield service


def fetch(url: str, form: dict[str, str] | None = None) -> tuple[int, Any, bytes]:
    """One plain HTTP request past any proxy: status, headers, body."""
    data = urllib.parse.urlencode(form).encode() if form is not None else None
    try:
        with NO_PROXY.open(urllib.request.Request(url, data=data), timeout=10) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers, error.read()


def start_device_login(live: Live) -> tuple[dict[str, Any], dict[str, Any]]:
    """What ``xos-login login`` does first: the discovery document, then a device code."""
    status, _, body = fetch(live.base + "/.well-known/openid-configuration")
    assert status == 200
    discovery = json.loads(body)
    status, _, body = fetch(discovery["device_authorization_endpoint"],
                            {"client_id": "xos-login", "scope": "openid"})
    assert status == 200, body
    return discovery, json.loads(body)


def poll_token(discovery: dict[str, Any], device_code: str) -> tuple[int, dict[str, Any]]:
    status, _, body = fetch(discovery["token_endpoint"], {
        "grant_type": DEVICE_GRANT, "client_id": "xos-login", "device_code": device_code})
    return status, json.loads(body)


def test_safe_screenshot_names() -> None:
    assert safe_name("device page/approved") == "device-page-approved.png"
    assert safe_name("../../etc/passwd") == "etc-passwd.png"
    assert safe_name("FAILED-test_x[sqlite]") == "FAILED-test_x-sqlite.png"
    assert safe_name("shot.png") == "shot.png"
    with pytest.raises(ValueError):
        safe_name("../")


def test_device_page_headers(live: Live) -> None:
    """The page that takes passwords forbids scripts, framing and foreign form targets."""
    status, headers, body = fetch(live.base + "/device")
    assert status == 200 and b"Approve a device login" in body
    csp = headers["Content-Security-Policy"]
    assert csp, "no Content-Security-Policy on /device"
    directives = {d.split()[0]: d.split()[1:] for d in csp.split(";") if d.strip()}
    assert directives["default-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["form-action"] == ["'self'"]
    assert "script-src" not in directives  # default-src 'none': no script at all
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["Referrer-Policy"] == "no-referrer"
    assert headers["Cache-Control"] == "no-store"


def test_device_login_approved_in_chromium(live: Live, browser: WebDriver) -> None:
    discovery, device = start_device_login(live)
    assert device["verification_uri"] == live.base + "/device"
    status, answer = poll_token(discovery, device["device_code"])
    assert status == 400 and answer["error"] == "authorization_pending"

    browser.get(device["verification_uri"])
    wait_for(browser, "form input[name=user_code]")
    assert browser.title == "Approve a device login · XOS identity"
    assert "Enter the code that xos-login shows" in text(browser)
    empty = screenshot(browser, "device-page")
    assert empty == SCREENSHOTS / "device-page.png" and empty.is_file()
    assert png_size(empty) == WINDOW  # the page is shorter than the window: exactly it

    # The user types the code as they read it (lower case, no dash: the page normalizes).
    fill(browser, "user_code", device["user_code"].replace("-", " ").lower())
    fill(browser, "username", "alice")
    fill(browser, "password", PASSWORD)
    screenshot(browser, "device-page-filled")
    submit(browser, "Approve")
    message = wait_for(browser, "p.message.ok")
    assert message.text == "Approved: xos-login on your device is now signed in as alice."
    assert "Approve a device login" in text(browser)
    assert png_size(screenshot(browser, "device-page-approved")) == WINDOW

    # A real page, a real policy: nothing was refused, nothing failed.
    assert console_problems(browser) == []
    assert csp_violations(browser) == []

    # The device's next poll gets the user's token.
    status, answer = poll_token(discovery, device["device_code"])
    assert status == 200, answer
    _, _, jwks = fetch(discovery["jwks_uri"])
    claims = xos_tokens.verify_access_token(
        answer["access_token"], keys=xos_tokens.KeySet(json.loads(jwks)),
        issuer=live.base, audience=live.base)
    assert claims.preferred_username == "alice"

    # The collector does see a violation when one happens: an image on a page whose
    # policy is default-src 'none' is refused, and Chromium says so in its log.
    browser.execute_script(
        "const img = document.createElement('img'); img.src = '/logo.png';"
        " document.body.appendChild(img);")
    wait_for(browser, lambda d: csp_violations(d), timeout=5)
    assert "img-src" in csp_violations(browser)[0]
    assert console_problems(browser, ignore=("Content Security Policy",)) == []


def test_a_wrong_password_is_shown_on_the_page(live: Live, browser: WebDriver) -> None:
    _, device = start_device_login(live)
    browser.get(device["verification_uri_complete"])
    assert browser.find_element("name", "user_code").get_attribute("value") == \
        device["user_code"]
    fill(browser, "username", "alice")
    fill(browser, "password", "not the password")
    submit(browser, "button.approve")
    message = wait_for(browser, "p.message")
    assert "ok" not in (message.get_attribute("class") or "").split()
    assert "Approved" not in text(browser)
    screenshot(browser, "device-page-wrong-password")
    # Chromium logs the page's 4xx status as an error; that is the only problem.
    problems = console_problems(browser)
    assert len(problems) == 1 and "status of 401" in problems[0], problems


def test_no_browser_process_outlives_its_test() -> None:
    """Quit on a normal exit and on an exception: every process of the browser and the
    driver is gone afterwards (each is known by pid and start time)."""
    with chromium() as driver:
        driver.get("data:text/html,<title>tall</title><div style='height:2000px'>tall</div>")
        processes = browser_processes(driver)
        # A page taller than the window is taken whole.
        assert png_size(screenshot(driver, "harness-tall-page")) == (WINDOW[0], 2016)
    assert len(processes) >= 3  # chromedriver, the browser, its helpers
    assert still_running(processes) == set()

    with pytest.raises(RuntimeError, match="the test failed"), chromium() as driver:
        processes = browser_processes(driver)
        raise RuntimeError("the test failed")
    assert still_running(processes) == set()
