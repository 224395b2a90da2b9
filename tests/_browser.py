"""Browser-driving fixtures for interactive login tests (headless Chromium + chromedriver).

A pytest plugin (listed in ``tests/conftest.py``). Fixture ``browser``: a Selenium
``webdriver.Chrome`` on the Debian ``/usr/bin/chromium`` + ``/usr/bin/chromedriver`` (never
Selenium Manager, so nothing is downloaded). One Chromium runs per test session; every test
gets it with cookies cleared and on ``about:blank``. Chromium is kept off the network: its
proxy is a dead loopback port (loopback itself bypasses proxies) and host names other than
localhost don't resolve.

Playing the user against the test IdP (``tests/idp``; its pages have stable ids)::

    final_url = complete_login(browser, authorization_url)          # -> the redirect_uri URL
    complete_device_login(browser, verification_uri_complete)      # -> "device-success"
    complete_device_login(browser, (verification_uri, user_code))

    opener = open_url_in_browser(browser)    # a drop-in for webbrowser.open
    provider = PKCEProvider(..., browser_opener=opener)
    ...
    opener.wait()                            # the flow's final URL (raises what the thread raised)

Without chromium / chromedriver / selenium the fixture skips, or fails when env ``CI`` is truthy.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ._idp import _truthy_env

if TYPE_CHECKING:
    from selenium.webdriver import Chrome

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-breakpad",
    "--disable-crash-reporter",
    "--disable-features="
    + ",".join(
        (
            "OptimizationHints",
            "MediaRouter",
            "Translate",
            "AutofillServerCommunication",
            "CertificateTransparencyComponentUpdater",
            "NetworkTimeServiceQuerying",
            "PasswordLeakDetection",
            "PreconnectToSearch",
            "InterestFeedContentSuggestions",
        )
    ),
    "--disable-search-engine-choice-screen",
    "--disable-component-extensions-with-background-pages",
    # Point the remaining built-in Google endpoints at a dead loopback port.
    "--gaia-url=http://127.0.0.1:9",
    "--component-updater=url-source=http://127.0.0.1:9",
    "--metrics-recording-only",
    "--no-pings",
    "--password-store=basic",
    "--use-mock-keychain",
    "--window-size=1024,768",
    # No way off the machine: every non-loopback request goes to a dead proxy (loopback
    # is always direct), and no name but localhost resolves.
    "--proxy-server=http://127.0.0.1:9",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1, EXCLUDE [::1]",
)

# How long one browser step (page load, form submit) may take.
STEP_TIMEOUT_S = 15.0
# Terminal pages of the IdP's device flow (``data-page`` of <body>).
DEVICE_DONE_PAGES = ("device-success", "device-denied")

__all__ = [
    "CHROMEDRIVER",
    "CHROME_FLAGS",
    "CHROMIUM",
    "BrowserFlowError",
    "BrowserOpener",
    "browser",
    "browser_available",
    "complete_device_login",
    "complete_login",
    "open_url_in_browser",
    "start_chrome",
]


class BrowserFlowError(AssertionError):
    """The IdP pages did not go the way the helper expected (error page, timeout, ...)."""


def browser_available() -> str | None:
    """None if headless Chromium can be driven here, else the reason why not."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return f"{path} is missing (install Debian packages chromium and chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium; it is in the test extras)"
    return None


def start_chrome(user_data_dir: str | os.PathLike[str]) -> Chrome:
    """A new headless Chromium with a fresh profile in ``user_data_dir`` (caller quits it)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={os.fspath(user_data_dir)}")
    options.add_experimental_option(
        "prefs",
        {
            "credentials_enable_service": False,
            "profile.password_manager_enabled": False,
            "profile.password_manager_leak_detection": False,
            "safebrowsing.enabled": False,
            "signin.allowed": False,
            "search.suggest_enabled": False,
            "alternate_error_pages.enabled": False,
            "net.network_prediction_options": 2,  # no preconnect / prefetch
            "translate.enabled": False,
            "default_search_provider.enabled": False,
            # Debian's master_preferences open a web start page in the first tab.
            "homepage": "about:blank",
            "homepage_is_newtabpage": False,
            "session.restore_on_startup": 4,
            "session.startup_urls": ["about:blank"],
        },
    )
    options.page_load_strategy = "normal"
    # Explicit chromedriver path: Selenium Manager never runs (it would try to download).
    service = Service(executable_path=CHROMEDRIVER, log_output=os.devnull)
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(STEP_TIMEOUT_S)
    driver.set_script_timeout(STEP_TIMEOUT_S)
    return driver


class _BrowserHolder:
    """The session's Chromium, restarted if a test left it dead."""

    def __init__(self, base_dir: Path):
        self._base_dir = base_dir
        self._n = 0
        self.driver: Chrome | None = None

    def get(self) -> Chrome:
        if self.driver is not None:
            try:
                self.driver.get("about:blank")
                self.driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
                return self.driver
            except Exception:
                self.quit()
        self._n += 1
        profile = self._base_dir / f"profile-{self._n}"
        profile.mkdir(parents=True, exist_ok=True)
        self.driver = start_chrome(profile)
        return self.driver

    def quit(self) -> None:
        driver, self.driver = self.driver, None
        if driver is not None:
            with contextlib.suppress(Exception):
                driver.quit()


@pytest.fixture(scope="session")
def _browser_holder() -> Iterator[_BrowserHolder]:
    reason = browser_available()
    if reason:
        if _truthy_env("CI"):
            pytest.fail(f"{reason} (CI is set, so this is an error, not a skip)", pytrace=False)
        pytest.skip(reason)
    base = Path(tempfile.mkdtemp(prefix="flyteauth-chromium-"))
    holder = _BrowserHolder(base)
    try:
        yield holder
    finally:
        holder.quit()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def browser(_browser_holder: _BrowserHolder) -> Iterator[Chrome]:
    """Headless Chromium (Selenium ``webdriver.Chrome``) with no cookies, on about:blank.

    Shared by the session (starting Chromium costs ~1 s); background flows started through
    :func:`open_url_in_browser` are waited for at teardown.
    """
    driver = _browser_holder.get()
    try:
        yield driver
    finally:
        for opener in [o for o in _OPENERS if o.driver is driver]:
            opener.join(STEP_TIMEOUT_S * 2)
            _OPENERS.remove(opener)
        try:
            driver.get("about:blank")
        except Exception:
            _browser_holder.quit()


# ---------------------------------------------------------------- page helpers
def _page(driver: Chrome) -> str | None:
    """``data-page`` of the IdP page shown (login, consent, device-input, ...), or None."""
    try:
        value = driver.execute_script("return document.body ? (document.body.dataset.page || null) : null;")
    except Exception:
        return None
    return value if isinstance(value, str) else None


def _page_text(driver: Chrome) -> str:
    try:
        return str(driver.execute_script("return document.body ? document.body.innerText : '';"))[:2000]
    except Exception:
        return "(page text unavailable)"


def _click_and_wait(driver: Chrome, element_id: str) -> None:
    """Click the element and wait until the page it was on is gone."""
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    element = driver.find_element(By.ID, element_id)
    element.click()

    def gone(_: Chrome) -> bool:
        # Chrome sometimes reports a node of the page being torn down as "does not belong to the
        # document" instead of stale: both mean the page we clicked on is gone.
        try:
            element.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc) or "No node with given id" in str(exc):
                return True
            raise
        return False

    WebDriverWait(driver, STEP_TIMEOUT_S).until(gone)


def _fill(driver: Chrome, element_id: str, value: str) -> None:
    from selenium.webdriver.common.by import By

    element = driver.find_element(By.ID, element_id)
    element.clear()
    element.send_keys(value)


def _base(url: str) -> tuple[str, str, str]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, parts.netloc.lower(), parts.path


def _handle_login_or_consent(driver: Chrome, page: str, username: str, password: str, consent: bool) -> bool:
    if page == "login":
        _fill(driver, "login", username)
        _fill(driver, "password", password)
        _click_and_wait(driver, "submit")
        return True
    if page == "consent":
        _click_and_wait(driver, "approve" if consent else "deny")
        return True
    return False


def complete_login(
    driver: Chrome,
    authorization_url: str,
    username: str = "alice",
    password: str = "pw",
    consent: bool = True,
    *,
    timeout: float = STEP_TIMEOUT_S,
) -> str:
    """Open ``authorization_url`` and play the user: log in, consent (or deny when
    ``consent=False``), until the browser lands on the request's ``redirect_uri``.

    Returns that final URL (with ``code``/``state``/``iss`` or ``error``/
    ``error_description``). Pages that don't appear (existing session, login_mode deny)
    are skipped. Whatever answers on the redirect URI gets a real request; if nothing
    listens there the URL is still returned (Chromium reports the attempted URL).
    """
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(authorization_url).query)
    redirect_uri = (query.get("redirect_uri") or [None])[0]
    if not redirect_uri:
        raise BrowserFlowError(f"authorization URL has no redirect_uri: {authorization_url}")
    target = _base(redirect_uri)

    driver.get(authorization_url)
    deadline = time.monotonic() + timeout
    while True:
        url = driver.current_url
        if _base(url) == target:
            return url
        page = _page(driver)
        if _handle_login_or_consent(driver, page or "", username, password, consent):
            deadline = time.monotonic() + timeout
            continue
        if page == "error":
            raise BrowserFlowError(f"IdP error page at {url}: {_page_text(driver)}")
        if time.monotonic() > deadline:
            raise BrowserFlowError(
                f"no redirect to {redirect_uri} within {timeout:.0f}s; at {url} (page {page!r}): {_page_text(driver)}"
            )
        time.sleep(0.05)


def complete_device_login(
    driver: Chrome,
    verification: str | tuple[str, str],
    username: str = "alice",
    password: str = "pw",
    consent: bool = True,
    *,
    confirm: bool = True,
    timeout: float = STEP_TIMEOUT_S,
) -> str:
    """Play the user of a device flow on the IdP's ``/device`` pages.

    ``verification`` is ``verification_uri_complete`` or ``(verification_uri, user_code)``
    (then the code is typed in). Confirms the device (or aborts when ``confirm=False``),
    logs in, consents (or denies when ``consent=False``). Returns the final page name:
    ``"device-success"`` or ``"device-denied"`` (user abort/deny, or login_mode deny).
    Raises :class:`BrowserFlowError` on error pages (wrong / expired / used code, ...).
    """
    if isinstance(verification, str):
        driver.get(verification)
    else:
        uri, user_code = verification
        driver.get(uri)
        if _page(driver) != "device-input":
            raise BrowserFlowError(f"expected the user-code page at {uri}: {_page_text(driver)}")
        _type_user_code(driver, user_code)
        _click_and_wait(driver, "submit")

    deadline = time.monotonic() + timeout
    while True:
        page = _page(driver)
        if page in DEVICE_DONE_PAGES:
            return page
        if page == "device-confirm":
            _click_and_wait(driver, "confirm" if confirm else "abort")
            deadline = time.monotonic() + timeout
            continue
        if _handle_login_or_consent(driver, page or "", username, password, consent):
            deadline = time.monotonic() + timeout
            continue
        if page in ("error", "device-error") or (page == "device-input" and _has_error(driver)):
            raise BrowserFlowError(f"device flow error page ({page}) at {driver.current_url}: {_page_text(driver)}")
        if time.monotonic() > deadline:
            raise BrowserFlowError(
                f"device flow stuck at {driver.current_url} (page {page!r}) for {timeout:.0f}s: {_page_text(driver)}"
            )
        time.sleep(0.05)


def _type_user_code(driver: Chrome, user_code: str) -> None:
    from selenium.webdriver.common.by import By

    element = driver.find_element(By.NAME, "user_code")
    element.clear()
    element.send_keys(user_code)


def _has_error(driver: Chrome) -> bool:
    try:
        return bool(
            driver.execute_script("var m = document.getElementById('message'); return !!(m && m.dataset.error);")
        )
    except Exception:
        return False


# ---------------------------------------------------------------- webbrowser.open stand-in
_OPENERS: list[BrowserOpener] = []


class BrowserOpener:
    """Callable stand-in for ``webbrowser.open``: ``opener(url) -> True``.

    Each call drives the browser through the flow in a background thread (one flow at a
    time, in call order): an authorization URL (has ``redirect_uri``) with
    :func:`complete_login`, anything else (the device ``verification_uri[_complete]``) with
    :func:`complete_device_login`. ``kwargs`` (username, password, consent, ...) are
    passed on. ``urls`` lists what was opened; :meth:`wait` returns the last flow's result
    (final URL / device page name) and re-raises its exception.
    """

    def __init__(self, driver: Chrome, **kwargs: Any):
        self.driver = driver
        self.kwargs = kwargs
        self.urls: list[str] = []
        self.results: list[str] = []
        self.errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()  # one flow at a time on the driver
        self._done = threading.Condition()

    def __call__(self, url: str, *args: Any, **kwargs: Any) -> bool:
        self.urls.append(url)
        thread = threading.Thread(target=self._run, args=(url,), name="browser-opener", daemon=True)
        self._threads.append(thread)
        thread.start()
        return True

    def _run(self, url: str) -> None:
        with self._lock:
            try:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)
                if "redirect_uri" in query:
                    kwargs = {k: v for k, v in self.kwargs.items() if k != "confirm"}
                    result = complete_login(self.driver, url, **kwargs)
                else:
                    result = complete_device_login(self.driver, url, **self.kwargs)
            except BaseException as exc:
                with self._done:
                    self.errors.append(exc)
                    self._done.notify_all()
            else:
                with self._done:
                    self.results.append(result)
                    self._done.notify_all()

    @property
    def calls(self) -> int:
        return len(self.urls)

    def join(self, timeout: float | None = None) -> None:
        end = None if timeout is None else time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(None if end is None else max(0.0, end - time.monotonic()))

    def wait(self, timeout: float = STEP_TIMEOUT_S * 2) -> str:
        """Wait for every flow started so far; return the last result or raise its error."""
        if not self._threads:
            raise BrowserFlowError("the opener was never called")
        self.join(timeout)
        if any(t.is_alive() for t in self._threads):
            raise BrowserFlowError(f"browser flow still running after {timeout:.0f}s (urls: {self.urls})")
        if self.errors:
            raise self.errors[-1]
        return self.results[-1]


def open_url_in_browser(driver: Chrome, **kwargs: Any) -> BrowserOpener:
    """A ``webbrowser.open`` replacement driving ``driver`` (see :class:`BrowserOpener`).

    ``kwargs`` go to :func:`complete_login` / :func:`complete_device_login`
    (``username``, ``password``, ``consent``, ``timeout``; ``confirm`` for device flows only).
    """
    opener = BrowserOpener(driver, **kwargs)
    _OPENERS.append(opener)
    return opener
