"""The minor findings of the 0.1.0 review (issue 9), one test each (PKCE's in tests/test_pkce.py, the
keyring backend choice in tests/test_edges_keyring.py)."""

from __future__ import annotations

import base64
import os
import stat
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from flyteauth_core import AuthConfig, AuthSession
from flyteauth_core.errors import (
    CommandError,
    ConfigError,
    InteractionRequired,
    InvalidClientError,
    TokenStoreError,
    TokenTimeoutError,
    TransientTokenError,
)
from flyteauth_core.http import RetryPolicy
from flyteauth_core.lifecycle import EXPIRING, TokenManager
from flyteauth_core.testing import DemoTokenEndpoint
from flyteauth_core.token import RefreshPolicy, Token
from flyteauth_providers.client_credentials import ClientSecretAuthenticator
from flyteauth_providers.file_store import FileTokenStore

from ._interactive_helpers import HttpBrowser, session_for
from ._leakscan import register_secret

SCRIPTS = Path(__file__).parent / "scripts"


def _issuer(lifetime: float = 3600.0) -> Any:
    issued: list[str] = []

    def acquire(previous: Token | None, reason: str) -> Token:
        issued.append(reason)
        return Token(f"minor-secret-token-{len(issued)}", expires_at=time.time() + lifetime)

    acquire.issued = issued  # type: ignore[attr-defined]
    return acquire


def test_state_and_metadata_reprs_hide_the_token() -> None:
    manager = TokenManager(_issuer())
    metadata = manager.metadata()
    token = manager.token().access_token
    register_secret(token)
    assert metadata[0][1] == f"Bearer {token}"  # what is sent is the real value
    for text in (repr(manager._state), repr(metadata), repr((("x-caller", "v"), *metadata)), repr(manager)):
        assert token not in text


def test_compare_and_invalidate_never_overwrites_a_token_just_published() -> None:
    """``rejected()`` holds the lock from reading the state to writing it; a refresh publishing meanwhile
    waits for it, so the new token is never replaced by the invalidated old one."""
    inside, resume = threading.Event(), threading.Event()
    pausing = threading.local()

    def clock() -> float:
        if getattr(pausing, "on", False):
            inside.set()
            resume.wait(5)
        return time.time()

    manager = TokenManager(_issuer(), clock=clock)
    old = manager.metadata()

    def reject() -> None:
        pausing.on = True
        manager.rejected(old)

    rejecter = threading.Thread(target=reject)
    rejecter.start()
    assert inside.wait(5)  # rejected() has read the state and holds the lock
    publisher = threading.Thread(target=lambda: manager.refresh("expired"))
    publisher.start()
    time.sleep(0.2)
    resume.set()
    rejecter.join(5)
    publisher.join(5)
    assert manager.token().access_token == "minor-secret-token-2"
    assert manager.metadata() != old  # the new token stands, valid


def test_login_does_not_join_a_background_refresh_and_times_out_typed() -> None:
    gate = threading.Event()
    reasons: list[str] = []

    def acquire(previous: Token | None, reason: str) -> Token:
        reasons.append(reason)
        if reason == EXPIRING:
            gate.wait(5)
        return Token(f"{reason}-token", expires_at=time.time() + 3600)

    now = [time.time()]
    manager = TokenManager(acquire, clock=lambda: now[0], policy=RefreshPolicy(window=300, jitter=0,
                                                                                acquire_timeout=2.0))
    manager.token()
    now[0] += 3600 - 200  # stale: the next call starts a background refresh
    manager.token()
    while EXPIRING not in reasons:
        time.sleep(0.01)
    result: list[Token] = []
    login = threading.Thread(target=lambda: result.append(manager.refresh()))
    login.start()
    time.sleep(0.1)
    gate.set()
    login.join(5)
    assert result and result[0].access_token == "login-token"  # 0.1.0: the background's expiring-token
    assert reasons == ["initial", EXPIRING, "login"]

    stuck = threading.Event()
    slow = TokenManager(lambda previous, reason: (stuck.wait(5), Token("never"))[1],
                        policy=RefreshPolicy(acquire_timeout=0.2))
    with pytest.raises(TokenTimeoutError):  # 0.1.0: concurrent.futures.TimeoutError escaped
        slow.refresh()
    stuck.set()


def test_a_raising_event_hook_never_leaves_waiters_hanging() -> None:
    def hook(event: Any) -> None:
        raise RuntimeError("broken hook")

    def failing(previous: Token | None, reason: str) -> Token:
        raise TransientTokenError("IdP down", endpoint="https://idp/token", transient=True)

    manager = TokenManager(failing, on_event=hook, policy=RefreshPolicy(acquire_timeout=2))
    started = time.monotonic()
    with pytest.raises(TransientTokenError):
        manager.token()
    assert time.monotonic() - started < 1.5
    working = TokenManager(_issuer(), on_event=hook)
    assert working.token().access_token == "minor-secret-token-1"


def test_waiters_outlast_a_device_login_and_the_sync_owner_honours_acquire_timeout() -> None:
    config = AuthConfig(endpoint="127.0.0.1:9", insecure=True, auth_type="DeviceFlow", client_id="c",
                        token_url="http://127.0.0.1:9/token")
    with AuthSession(config, store="memory", interactive=True) as session:
        assert session.manager.policy.acquire_timeout >= 600  # DeviceFlow's default login timeout
    with AuthSession(config, store="memory", interactive=False) as session:
        assert session.manager.policy.acquire_timeout == RefreshPolicy().acquire_timeout

    stuck = threading.Event()
    manager = TokenManager(lambda previous, reason: (stuck.wait(5), Token("late"))[1],
                           policy=RefreshPolicy(acquire_timeout=0.3))
    started = time.monotonic()
    with pytest.raises(TokenTimeoutError):  # 0.1.0: the owner ran acquire inline, unbounded
        manager.metadata()
    assert time.monotonic() - started < 2
    stuck.set()


def test_a_background_refresh_never_starts_an_interactive_login(fake_peers: Any, tmp_path: Path) -> None:
    _, server = fake_peers()
    opened: list[str] = []
    with session_for(server, tmp_path, browserOpener=lambda url: opened.append(url) or True) as session:
        revoked = Token("old-access", expires_at=time.time() + 60, refresh_token="refresh-the-idp-never-issued")
        with pytest.raises(InteractionRequired):
            session._acquire(revoked, EXPIRING)
        assert opened == []  # 0.1.0: the browser opened from the refresh worker


def test_an_already_expired_command_token_is_refused(tmp_path: Path) -> None:
    command = (sys.executable, str(SCRIPTS / "json_token.py"), str(tmp_path / "count"), f"at:{time.time() - 30:.0f}")
    config = AuthConfig(endpoint="127.0.0.1:9", insecure=True, auth_type="ExternalCommand", command=command)
    with AuthSession(config, store="memory", interactive=False) as session, \
            pytest.raises(CommandError, match="already expired"):
        session.get_token()


def test_a_refresh_with_token_url_and_client_id_needs_no_discovery(fake_peers: Any, tmp_path: Path) -> None:
    from ._interactive_helpers import CLIENT_ID

    fake, server = fake_peers(rotate=False)
    # The same config both times: tokenUrl is part of the credential's identity (flyteauth_core.identity).
    with session_for(server, tmp_path, browserOpener=HttpBrowser(), token_url=fake.token_endpoint,
                     client_id=CLIENT_ID) as session:
        first = session.login()
        store, key = session.store, session.identity().store_key
    assert store is not None
    store.save(key, Token(first.access_token, expires_at=time.time() - 60, refresh_token=first.refresh_token))
    with session_for(server, tmp_path, interactive=False, token_url=fake.token_endpoint,
                     client_id=CLIENT_ID) as session:
        token = session.get_token()
        assert token.access_token != first.access_token
        assert session._discovery.calls == 0  # 0.1.0: discovery ran (and failed with the server down)


def test_file_store_fsyncs_the_directory_refuses_unsafe_ones_and_hints_right(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "tokens"
    store = FileTokenStore(directory=directory, lock_timeout=0.1)
    synced: list[bool] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(stat.S_ISDIR(os.fstat(fd).st_mode)),
                                                 real_fsync(fd))[1])
    store.save("k", Token("a-token-value", expires_at=time.time() + 60))
    assert synced == [False, True]  # the file, then the directory
    monkeypatch.undo()

    os.chmod(directory, 0o777)
    with pytest.raises(TokenStoreError, match="world-writable"):
        store.save("k", Token("another-token", expires_at=time.time() + 60))
    with pytest.raises(TokenStoreError):
        store.load("k")
    os.chmod(directory, 0o700)

    with store.lock("k"):
        held = threading.Thread(target=lambda: None)
        errors: list[BaseException] = []

        def second() -> None:
            try:
                with FileTokenStore(directory=directory, lock_timeout=0.1).lock("k"):
                    pass
            except TokenStoreError as exc:
                errors.append(exc)

        held = threading.Thread(target=second)
        held.start()
        held.join(5)
    assert errors and "delete the lock" not in str(errors[0]) and "nothing needs deleting" in str(errors[0])


@pytest.mark.parametrize("secret", ["p:ss%w+rd with space", "pässwörd-€-secret"])
def test_client_secret_basic_is_form_urlencoded(secret: str) -> None:
    register_secret(secret)
    config = AuthConfig(endpoint="127.0.0.1:9", auth_type="ClientSecret", client_id="svc:one", client_secret=secret)
    auth = ClientSecretAuthenticator(config)._client_auth()
    _, headers, _ = auth.prepare("POST", "https://idp.example/token", {}, "grant_type=client_credentials")
    decoded = base64.b64decode(headers["Authorization"].removeprefix("Basic ")).decode("ascii")
    from urllib.parse import unquote_plus

    user, _, password = decoded.partition(":")
    assert (unquote_plus(user), unquote_plus(password)) == ("svc:one", secret)  # 0.1.0: raw, or UnicodeEncodeError


def test_plain_http_token_endpoints_are_refused_for_confidential_clients() -> None:
    def session(url: str, **options: Any) -> AuthSession:
        config = AuthConfig(endpoint="127.0.0.1:9", insecure=True, auth_type="ClientSecret", client_id="svc",
                            client_secret="svc-secret-value", token_url=url, options=options)
        return AuthSession(config, store="memory", interactive=False, retry=RetryPolicy(attempts=1))

    with session("http://idp.flyteauth-test.invalid/token") as s, pytest.raises(ConfigError, match="plain-http"):
        s.get_token()
    with session("http://idp.flyteauth-test.invalid/token", allowInsecureTokenEndpoint=True) as s, \
            pytest.raises(TransientTokenError):
        s.get_token()  # opted in: sent (and the name does not resolve)
    with DemoTokenEndpoint("svc", "other-secret-value") as idp, session(idp.url) as s, \
            pytest.raises(InvalidClientError):
        s.get_token()  # loopback plain http is fine (sent, refused for the wrong secret)
