"""Device flow (RFC 8628): prompt, polling pace, slow_down, and every way it ends.

Against the in-process OAuth server, where the test plays the user by approving the code shown by the
prompt; the real-IdP test (a browser approving on the IdP's pages) is marked ``idp``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flyteauth_core.errors import InteractionRequired
from flyteauth_core.testing import FlyteTestServer
from flyteauth_providers import device_flow
from flyteauth_providers._interactive import LoginDeniedError, LoginExpiredError, LoginTimeoutError
from flyteauth_providers.device_flow import DeviceCode, DeviceFlowAuthenticator

from ._interactive_helpers import session_for
from ._oauth_fake import FakeOAuthServer

Peers = Callable[..., tuple[FakeOAuthServer, FlyteTestServer]]


class User:
    """Reads the prompt, and after ``delay`` approves (or denies, or lets expire) the code."""

    def __init__(self, fake: FakeOAuthServer, action: str = "approve", delay: float = 0.5) -> None:
        self.fake, self.action, self.delay = fake, action, delay
        self.shown: list[DeviceCode] = []

    def __call__(self, code: DeviceCode) -> None:
        self.shown.append(code)
        if self.action == "ignore":
            return

        def act() -> None:
            time.sleep(self.delay)
            if self.action == "expire":
                self.fake.expire_device(code.user_code)
            else:
                self.fake.approve_device(code.user_code, approve=self.action == "approve")

        threading.Thread(target=act, daemon=True).start()


def test_device_login_with_a_slow_down_honoured(fake_peers: Peers, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_flow, "SLOW_DOWN_STEP", 0.5)  # the real-IdP test waits the full 5 s
    fake, server = fake_peers(device_interval=0.2)
    fake.slow_down_next = 1
    user = User(fake, delay=0.3)
    with session_for(server, tmp_path, "DeviceFlow", deviceFlowPrompt=user) as session:
        started = time.monotonic()
        token = session.login()
        elapsed = time.monotonic() - started
        authenticator = session._authenticator
    assert isinstance(authenticator, DeviceFlowAuthenticator)
    assert fake.validate(token.access_token) is None and token.refresh_token
    assert authenticator.slow_downs == 1 and fake.stats["slow_down"] == 1
    # Polls: 0.2 s (slow_down), then every 0.7 s: the interval grew and stayed grown.
    assert elapsed >= 0.2 + 0.7 - 0.05
    shown = user.shown[0]
    assert shown.verification_uri_complete and shown.user_code in shown.verification_uri_complete
    assert shown.endpoint == server.target


def test_polling_keeps_the_servers_interval(fake_peers: Peers, tmp_path: Path) -> None:
    fake, server = fake_peers(device_interval=0.3)
    user = User(fake, delay=1.0)
    with session_for(server, tmp_path, "DeviceFlow", deviceFlowPrompt=user) as session:
        session.login()
        polls = session._authenticator.polls
    assert fake.stats["slow_down"] == 0
    assert 3 <= polls <= 5, polls


@pytest.mark.parametrize(("action", "error"), [("deny", LoginDeniedError), ("expire", LoginExpiredError)])
def test_denied_and_expired_codes_end_promptly(fake_peers: Peers, tmp_path: Path, action: str,
                                               error: type[Exception]) -> None:
    fake, server = fake_peers(device_interval=0.1)
    with session_for(server, tmp_path, "DeviceFlow", deviceFlowPrompt=User(fake, action, 0.2)) as session:
        started = time.monotonic()
        with pytest.raises(error):
            session.login()
    assert time.monotonic() - started < 3


def test_own_timeout(fake_peers: Peers, tmp_path: Path) -> None:
    fake, server = fake_peers(device_interval=0.1)
    with session_for(server, tmp_path, "DeviceFlow", deviceFlowPrompt=User(fake, "ignore"),
                     device_flow_timeout=1) as session:
        started = time.monotonic()
        with pytest.raises(LoginTimeoutError, match="within 1s"):
            session.login()
    assert 0.9 < time.monotonic() - started < 3


def test_default_prompt_prints_to_stderr(fake_peers: Peers, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    _, server = fake_peers(device_interval=0.1)
    with session_for(server, tmp_path, "DeviceFlow", device_flow_timeout=0.5) as session, \
            pytest.raises(LoginTimeoutError):
        session.login()
    err = capsys.readouterr().err
    assert "/device?user_code=" in err and "enter the code" in err


def test_non_interactive_never_requests_a_code(fake_peers: Peers, tmp_path: Path) -> None:
    fake, server = fake_peers()
    with session_for(server, tmp_path, "DeviceFlow", interactive=False) as session, \
            pytest.raises(InteractionRequired):
        session.get_token()
    assert fake.stats["device_authorization"] == 0


def test_closing_the_session_cancels_a_waiting_login(fake_peers: Peers, tmp_path: Path) -> None:
    fake, server = fake_peers(device_interval=0.1)
    session = session_for(server, tmp_path, "DeviceFlow", deviceFlowPrompt=User(fake, "ignore"))
    errors: list[BaseException] = []

    def login() -> None:
        try:
            session.login()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=login)
    thread.start()
    time.sleep(0.5)
    session.close()
    thread.join(3)
    assert not thread.is_alive() and errors and "cancelled" in str(errors[0])


@pytest.mark.idp
def test_device_login_on_the_real_idp_with_a_slow_down_honoured(native_peers: Any, browser: Any,
                                                                 tmp_path: Path) -> None:
    """The IdP answers the first poll with slow_down (its fault queue); the next poll must come 1 + 5 s later,
    and the IdP's own pacing (interval 1 s) never finds a poll too early."""
    from ._browser import open_url_in_browser

    idp, server = native_peers(token_ttl=300, device_interval=1)
    idp.inject_faults([{"status": 400, "body": {"error": "slow_down", "error_description": "test"}}])
    opener = open_url_in_browser(browser)
    shown: list[DeviceCode] = []

    def user(code: DeviceCode) -> None:
        shown.append(code)
        opener(code.verification_uri_complete or code.verification_uri)

    with session_for(server, tmp_path, "DeviceFlow", deviceFlowPrompt=user) as session:
        authenticator = session._authenticator
        polls: list[float] = []
        exchange = authenticator.exchange

        def timed(*args: Any, **kwargs: Any) -> Any:
            polls.append(time.monotonic())
            return exchange(*args, **kwargs)

        authenticator.exchange = timed  # type: ignore[method-assign]
        token = session.login()
    assert opener.wait() == "device-success"
    assert token.refresh_token and shown[0].interval == 1
    assert authenticator.slow_downs == 1 and len(polls) >= 2
    assert polls[1] - polls[0] >= 6 - 0.1, polls  # interval 1 s + 5 s after the slow_down
    stats = idp.stats()
    assert stats["slow_down_sent"] == 0 and stats["by_grant"][DEVICE_CODE] == len(polls), stats


DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
