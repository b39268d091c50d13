"""Headless Chromium for the portal's browser tests: Debian's ``chromium`` driven by
Selenium through Debian's ``chromedriver`` (both installed by ``scripts/setup.sh``).

Import it as the other test folders import their helpers (pytest puts a test file's
folder on ``sys.path``; ``tests/web`` has no ``__init__.py`` on purpose, since a package
named ``web`` would shadow the portal's own ``web`` package)::

    from browser import chromium, screenshot, fill, submit, text, wait_for, console_problems

The ``browser`` fixture of ``tests/web/conftest.py`` gives each test its own browser;
``with chromium() as driver:`` does the same for a module-scoped fixture.

Nothing is ever downloaded: the Service names the driver's path (so Selenium Manager is
not consulted) and ``SE_OFFLINE`` forbids it to reach the network anyway. The browser
talks to loopback only: host names other than localhost do not resolve, proxies and
Chromium's background traffic (updates, sync, safe browsing, metrics) are switched off.
On exit the browser and driver are quit and every process they started is checked
gone (killed and reported if one lingers), and the throwaway profile is removed.
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import signal
import struct
import tempfile
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

# Selenium Manager must never fetch a driver or a browser (it is not even run when the
# Service names the driver: this is a second lock).
os.environ["SE_OFFLINE"] = "true"
# Selenium talks to chromedriver on localhost through any proxy the environment names,
# unless no_proxy exempts it: loopback is always reached directly.
for _var in ("no_proxy", "NO_PROXY"):
    _hosts = [h.strip() for h in os.environ.get(_var, "").split(",") if h.strip()]
    os.environ[_var] = ",".join(_hosts + [h for h in ("localhost", "127.0.0.1", "::1")
                                          if h not in _hosts])

REPO = Path(__file__).resolve().parents[2]
#: where screenshots are kept as test artefacts (ignored by git)
SCREENSHOTS = REPO / "artifacts" / "screenshots"
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WINDOW = (1280, 900)
#: the tallest full-page screenshot taken, in CSS pixels
MAX_HEIGHT = 8000

FLAGS = (
    "--headless=new",
    "--no-sandbox",              # tests run as root: Chromium refuses to start sandboxed
    "--disable-dev-shm-usage",   # /dev/shm of a container is small
    "--disable-gpu",
    "--force-device-scale-factor=1",  # screenshots in CSS pixels
    "--hide-scrollbars",
    "--no-first-run",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--no-default-browser-check",
    "--disable-extensions",      # Debian's wrapper adds --load-extension=...; this wins
    "--disable-component-extensions-with-background-pages",
    "--disable-default-apps",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-quic",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication,"
    "CertificateTransparencyComponentUpdater,InterestFeedContentSuggestions",
    "--metrics-recording-only",
    "--no-pings",
    "--no-proxy-server",
    "--password-store=basic",
    # No name but localhost resolves: a page cannot reach out past loopback.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1, EXCLUDE [::1]",
)


class BrowserMissing(RuntimeError):
    pass


@dataclass
class _Session:
    profile: Path
    processes: set[tuple[int, int]] = field(default_factory=set)  # (pid, start time)
    log: list[dict[str, Any]] = field(default_factory=list)


_sessions: weakref.WeakKeyDictionary[WebDriver, _Session] = weakref.WeakKeyDictionary()


# -- processes -----------------------------------------------------------------------------
def _stat(pid: int) -> tuple[int, int, str] | None:
    """(parent pid, start time, state) of a live process, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[19]), fields[0]


def _tree(root: int) -> set[tuple[int, int]]:
    """``root`` and all its descendants, each with its start time (pids get reused)."""
    table: dict[int, tuple[int, int, str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (info := _stat(int(entry.name))) is not None:
            table[int(entry.name)] = info
    found, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            found.add((pid, table[pid][1]))
            todo.extend(child for child, info in table.items() if info[0] == pid)
    return found


def _by_profile(profile: Path) -> set[tuple[int, int]]:
    """Processes whose command line names the profile (a helper that left the tree)."""
    needle = str(profile).encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "cmdline").read_bytes() and (
                    info := _stat(int(entry.name))) is not None:
                found.add((int(entry.name), info[1]))
    return found


def still_running(processes: set[tuple[int, int]]) -> set[tuple[int, int]]:
    """The ones still running (a zombie has exited: it only waits to be reaped)."""
    alive = set()
    for pid, start in processes:
        info = _stat(pid)
        if info is not None and info[1] == start and info[2] != "Z":
            alive.add((pid, start))
    return alive


def browser_processes(driver: WebDriver) -> set[tuple[int, int]]:
    """The driver's and browser's processes as (pid, start time), as seen now."""
    session = _sessions[driver]
    service = driver.service
    if service.process is not None:
        session.processes |= _tree(service.process.pid)
    session.processes |= _by_profile(session.profile)
    return set(session.processes)


# -- the browser ---------------------------------------------------------------------------
def _options(profile: Path, width: int, height: int) -> webdriver.ChromeOptions:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--window-size={width},{height}")
    options.add_argument(f"--user-data-dir={profile / 'profile'}")
    options.add_experimental_option("prefs", {
        "credentials_enable_service": False,
        "profile.password_manager_enabled": False,
        "translate.enabled": False,
    })
    # Console messages (JS errors, CSP violations) come back through get_log("browser").
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return options


@contextmanager
def chromium(width: int = WINDOW[0], height: int = WINDOW[1]) -> Iterator[WebDriver]:
    """A headless Chromium, quit at exit with every process it started."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        raise BrowserMissing(f"{', '.join(missing)} missing: run 'bash scripts/setup.sh'"
                             " (Debian's chromium and chromium-driver)")
    work = Path(tempfile.mkdtemp(prefix="xos-chromium-"))
    driver_log = work / "chromedriver.log"
    # HOME and XDG folders in the work folder too: what Chromium writes outside its
    # profile (crash handler database, caches) lands there and goes with it.
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env |= {"HOME": str(work), "XDG_CONFIG_HOME": str(work / "config"),
            "XDG_CACHE_HOME": str(work / "cache"), "XDG_DATA_HOME": str(work / "data"),
            "TMPDIR": str(work), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(driver_log),
                      service_args=["--log-level=WARNING"], env=env)
    driver: WebDriver | None = None
    processes: set[tuple[int, int]] = set()
    try:
        try:
            driver = webdriver.Chrome(service=service, options=_options(work, width, height))
        except WebDriverException as error:
            tail = driver_log.read_text(errors="replace")[-2000:] if driver_log.exists() else ""
            raise RuntimeError(f"Chromium did not start: {error.msg}\n{tail}") from error
        _sessions[driver] = _Session(work)
        _fit_viewport(driver, width, height)
        processes = browser_processes(driver)
        yield driver
    finally:
        if driver is not None:
            processes |= browser_processes(driver)
            with contextlib.suppress(WebDriverException):
                driver.quit()
        else:
            if service.process is not None:
                processes |= _tree(service.process.pid)
            service.stop()
        processes |= _by_profile(work)
        left = _wait_gone(processes, 10)
        for pid, _start in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)
    if left:
        raise AssertionError(f"browser processes outlived the test (killed): {sorted(left)}")


def _fit_viewport(driver: WebDriver, width: int, height: int) -> None:
    """Make the page's viewport (what a screenshot shows) ``width`` x ``height``: even
    headless, the window's size includes some 140 px of browser frame."""
    for _ in range(3):
        inner = driver.execute_script("return [window.innerWidth, window.innerHeight]")
        if inner == [width, height]:
            return
        outer = driver.get_window_size()
        driver.set_window_size(outer["width"] + width - inner[0],
                               outer["height"] + height - inner[1])
    raise RuntimeError(f"cannot make the viewport {width}x{height}: it stays {inner}")


def _wait_gone(processes: set[tuple[int, int]], timeout: float) -> set[tuple[int, int]]:
    deadline = time.monotonic() + timeout
    while (left := still_running(processes)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


# -- screenshots ---------------------------------------------------------------------------
def safe_name(name: str) -> str:
    """A file name from any label: letters, digits, '.', '_' and '-' only."""
    stem = name[:-4] if name.lower().endswith(".png") else name
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip(".-")[:120]
    if not stem:
        raise ValueError(f"no usable file name in {name!r}")
    return stem + ".png"


def screenshot(driver: WebDriver, name: str) -> Path:
    """Save the whole page (at least the window, at most ``MAX_HEIGHT`` tall) as
    ``artifacts/screenshots/<name>.png``; return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / safe_name(name)
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    view, content = metrics["cssLayoutViewport"], metrics["cssContentSize"]
    width = max(view["clientWidth"], int(content["width"]))
    height = min(max(view["clientHeight"], int(content["height"])), MAX_HEIGHT)
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": height > view["clientHeight"],
        "clip": {"x": 0, "y": 0, "width": width, "height": height, "scale": 1}})
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG file (checked to be one)."""
    head = path.read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        raise ValueError(f"{path} is not a PNG")
    width, height = struct.unpack(">II", head[16:24])
    return width, height


# -- pages ---------------------------------------------------------------------------------
def text(driver: WebDriver) -> str:
    """The page's visible text."""
    return str(driver.find_element(By.TAG_NAME, "body").text)


def wait_for(driver: WebDriver, what: str | Callable[[WebDriver], Any],
             timeout: float = 10) -> Any:
    """Wait until a CSS selector matches a visible element (returned), or until a
    predicate of the driver returns something true (returned)."""
    if isinstance(what, str):
        return WebDriverWait(driver, timeout).until(
            expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, what)),
            f"nothing visible matches {what!r} after {timeout} s")
    return WebDriverWait(driver, timeout).until(what, f"still false after {timeout} s")


def fill(driver: WebDriver, field_name: str, value: str) -> WebElement:
    """Type ``value`` into the form field named ``field_name`` (cleared first)."""
    element = driver.find_element(By.NAME, field_name)
    element.clear()
    element.send_keys(value)
    return element


def _button(driver: WebDriver, label: str) -> WebElement:
    for element in driver.find_elements(
            By.CSS_SELECTOR, "button, input[type=submit], input[type=button]"):
        shown = element.text or element.get_attribute("value") or ""
        if shown.strip() == label and element.is_displayed():
            return element
    try:
        return driver.find_element(By.CSS_SELECTOR, label)
    except (NoSuchElementException, WebDriverException) as error:
        raise NoSuchElementException(f"no button reads {label!r} and no element matches"
                                     f" it as CSS") from error


def submit(driver: WebDriver, button: str, timeout: float = 10, wait: bool = True) -> None:
    """Press the button whose text (or value) is ``button``, else the element matching
    it as a CSS selector; by default wait until the next page has replaced this one."""
    old = driver.find_element(By.TAG_NAME, "html")
    _button(driver, button).click()
    if wait:
        WebDriverWait(driver, timeout).until(lambda _: _replaced(old),
                                             f"pressing {button!r} loaded no page")
        wait_for(driver, lambda d: d.execute_script("return document.readyState")
                 == "complete", timeout)


def _replaced(element: WebElement) -> bool:
    """Whether ``element``'s page is gone. Besides Selenium's stale-element error,
    Chromium sometimes answers a handle of a replaced document with "Node with given id
    does not belong to the document": that means gone too."""
    try:
        element.is_enabled()
    except StaleElementReferenceException:
        return True
    except WebDriverException as error:
        if "does not belong to the document" in str(error):
            return True
        raise
    return False


# -- the console ---------------------------------------------------------------------------
def browser_log(driver: WebDriver) -> list[dict[str, Any]]:
    """Every console entry of this browser so far (Chromium hands each out once; they
    are kept here), as dicts with ``level``, ``message``, ``source`` and ``timestamp``."""
    session = _sessions[driver]
    session.log.extend(driver.get_log("browser"))
    return list(session.log)


def is_csp_violation(entry: dict[str, Any]) -> bool:
    return "Content Security Policy" in entry.get("message", "")


def csp_violations(driver: WebDriver) -> list[str]:
    return [e["message"] for e in browser_log(driver) if is_csp_violation(e)]


def console_problems(driver: WebDriver, ignore: tuple[str, ...] = ()) -> list[str]:
    """JS errors, failed loads and CSP violations so far, less messages containing one
    of ``ignore``: a clean page gives ``[]``."""
    return [e["message"] for e in browser_log(driver)
            if (e.get("level") == "SEVERE" or is_csp_violation(e))
            and not any(part in e["message"] for part in ignore)]
