"""Secrets never leave through repr, str, logs, exception messages or tracebacks.

One session runs the whole lifecycle against in-process peers (a client-credentials token endpoint and a
Flyte-compatible gRPC server): first token, expiry, server-side revocation; then every way a user can get
the secret wrong is provoked.  Everything a user could see along the way is collected, and neither the
client secrets nor any access token issued may appear in it.
"""

from __future__ import annotations

import base64
import logging
import socket
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flyteauth_core import AuthConfig, AuthSession, Token, hookimpl
from flyteauth_core.config import describe
from flyteauth_core.errors import ConfigError, FlyteAuthError, InvalidClientError, TransientTokenError
from flyteauth_core.events import TokenEvent
from flyteauth_core.http import RetryPolicy
from flyteauth_core.lifecycle import AcquireRequest
from flyteauth_core.plugins import PluginRegistry
from flyteauth_core.testing import ECHO, DemoTokenEndpoint, FlyteTestServer

CLIENT_ID = "demo"
SECRET = "CANARY-good-secret-7f3a9c1e"
WRONG_INLINE = "CANARY-wrong-inline-52b8d0"
WRONG_FILE = "CANARY-wrong-file-e61f47"
WRONG_ENV = "CANARY-wrong-env-0c93aa"
SECRETS = (SECRET, WRONG_INLINE, WRONG_FILE, WRONG_ENV)


def needles(secret: str) -> list[str]:
    """The secret as it goes on the wire too (HTTP Basic), so an encoded leak is caught as well."""
    return [secret, base64.b64encode(f"{CLIENT_ID}:{secret}".encode()).decode()]


class EventRecorder:
    def __init__(self) -> None:
        self.events: list[TokenEvent] = []

    @hookimpl
    def flyteauth_token_event(self, event: TokenEvent) -> None:
        self.events.append(event)


@pytest.fixture
def peers() -> Iterator[tuple[DemoTokenEndpoint, FlyteTestServer]]:
    endpoint = DemoTokenEndpoint(CLIENT_ID, SECRET, ttl=1).start()
    server = FlyteTestServer(endpoint.validate, token_endpoint=endpoint.url).start()
    yield endpoint, server
    server.stop()
    endpoint.stop()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def exception_texts(exc: BaseException) -> list[str]:
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))]
    for linked in (exc.__cause__, exc.__context__):
        if linked is not None:
            texts += [str(linked), repr(linked)]
    return texts


def make_config(server: FlyteTestServer, **kwargs: Any) -> AuthConfig:
    kwargs.setdefault("client_id", CLIENT_ID)
    return AuthConfig(endpoint=server.target, insecure=True, auth_type="ClientSecret", **kwargs)


def run_lifecycle(server: FlyteTestServer, registry: PluginRegistry) -> tuple[list[Any], set[str]]:
    """First token, expiry, server-side revocation; returns (objects a user may print, tokens seen)."""
    good = make_config(server, client_secret=SECRET)
    session = AuthSession(good, registry=registry)
    try:
        unary = session.channel().unary_unary(ECHO["unary"])
        first = session.get_token()
        assert unary(b"ping") == b"ping"
        time.sleep(1.05)  # ttl=1: the first token is now expired
        assert unary(b"after expiry") == b"after expiry"
        second = session.get_token()
        assert second.access_token != first.access_token
        server.revoke(second.access_token)
        assert unary(b"after revocation") == b"after revocation"  # invalidated, refreshed, retried
        third = session.get_token()
        assert third.access_token != second.access_token
        assert session.stats.invalidations >= 1
        seen = [first, second, third, good, session, session.stats, session.server_info(),
                AcquireRequest(config=good, previous=third, reason="expired"), describe(good)]
        return seen, {first.access_token, second.access_token, third.access_token}
    finally:
        session.close()


def provoke_errors(server: FlyteTestServer, registry: PluginRegistry, tmp_path: Path,
                   monkeypatch: pytest.MonkeyPatch) -> tuple[list[Any], list[BaseException]]:
    """Every way to get the secret wrong; returns (configs and sessions, the errors raised)."""
    secret_file = tmp_path / "client_secret"
    secret_file.write_text(WRONG_FILE + "\n")
    monkeypatch.setenv("FLYTEAUTH_TEST_WRONG_SECRET", WRONG_ENV)
    monkeypatch.delenv("FLYTEAUTH_TEST_UNSET_SECRET", raising=False)
    cases: list[tuple[dict[str, Any], type[FlyteAuthError]]] = [
        ({"client_secret": WRONG_INLINE}, InvalidClientError),
        ({"client_secret_location": str(secret_file)}, InvalidClientError),
        ({"client_secret_env_var": "FLYTEAUTH_TEST_WRONG_SECRET"}, InvalidClientError),
        ({"client_secret_location": str(tmp_path / "missing_secret")}, ConfigError),
        ({"client_secret_env_var": "FLYTEAUTH_TEST_UNSET_SECRET"}, ConfigError),
        ({"client_secret": SECRET, "token_url": f"http://127.0.0.1:{closed_port()}/token", "scopes": ("all",)},
         TransientTokenError),
    ]
    seen: list[Any] = []
    errors: list[BaseException] = []
    fast = RetryPolicy(attempts=2, initial_delay=0.01, max_delay=0.02)  # the connection-refused case retries
    for kwargs, expected in cases:
        cfg = make_config(server, **kwargs)
        seen.append(cfg)
        with pytest.raises(expected) as info:
            bad = AuthSession(cfg, registry=registry, retry=fast)
            try:
                seen.append(bad)
                bad.get_token()
            finally:
                bad.close()
        errors.append(info.value)
        if expected is InvalidClientError:  # and through an RPC, as most users will meet it
            bad = AuthSession(cfg, registry=registry)
            try:
                with pytest.raises(InvalidClientError) as rpc_info:
                    bad.channel().unary_unary(ECHO["unary"])(b"ping")
                errors.append(rpc_info.value)
            finally:
                bad.close()
    assert any("rejected the client credentials" in str(e) for e in errors)
    return seen, errors


def test_no_secret_or_token_in_repr_str_logs_or_errors(
    peers: tuple[DemoTokenEndpoint, FlyteTestServer],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    endpoint, server = peers
    caplog.set_level(logging.DEBUG)
    for name in ("flyteauth", "httpx2", "httpcore2", "authlib", "grpc"):
        caplog.set_level(logging.DEBUG, logger=name)
    registry = PluginRegistry()
    recorder = EventRecorder()
    registry.register_module(recorder, "recorder")

    seen, tokens = run_lifecycle(server, registry)
    more, errors = provoke_errors(server, registry, tmp_path, monkeypatch)
    seen += more + recorder.events

    with endpoint._lock:
        tokens |= set(endpoint._tokens)  # every token issued, including background refreshes
    assert len(tokens) >= 3
    texts = [text for obj in seen for text in (repr(obj), str(obj))]
    texts += [text for exc in errors for text in exception_texts(exc)]
    for record in caplog.records:
        texts += [record.getMessage(), caplog.handler.format(record), record.exc_text or ""]
    captured = capfd.readouterr()
    texts += [captured.out, captured.err]

    # the net was cast: these sources were really examined
    assert {"acquired", "refreshed", "invalidated", "failed"} <= {e.kind for e in recorder.events}
    assert {"flyteauth", "httpx2", "httpcore2"} <= {r.name.split(".")[0] for r in caplog.records}
    assert any(r.levelno == logging.DEBUG for r in caplog.records if r.name.startswith("httpcore2"))

    everything = "\n".join(texts)
    for secret in SECRETS:
        for needle in needles(secret):
            assert needle not in everything, f"secret {secret!r} leaked"
    for token in tokens:
        assert token not in everything, "an access token leaked"


def test_auth_config_repr_hides_the_client_secret() -> None:
    config = AuthConfig(endpoint="dns:///flyte.example.com", client_id="ci", client_secret=SECRET)
    for text in (repr(config), str(config), f"{config!r}", repr([config]), repr({"c": config})):
        assert SECRET not in text
        assert "client_id='ci'" in text
    assert all(SECRET not in " ".join(row) for row in describe(config))
    assert dict((name, shown) for name, shown, _ in describe(config))["client_secret"] == "****"


def test_token_repr_hides_access_refresh_and_id_tokens() -> None:
    token = Token("CANARY-at-11", expires_at=1.0, refresh_token="CANARY-rt-22", id_token="CANARY-idt-33",
                  scopes=("all",))
    for text in (repr(token), str(token), repr([token]), repr(AcquireRequest(
            config=AuthConfig(endpoint="flyte:443", client_secret=SECRET), previous=token))):
        assert "CANARY" not in text
        assert "expires_at=1.0" in text


def test_session_repr_names_endpoint_and_type_only(peers: tuple[DemoTokenEndpoint, FlyteTestServer]) -> None:
    _, server = peers
    session = AuthSession(AuthConfig(endpoint=server.target, insecure=True, auth_type="client_credentials",
                                     client_id=CLIENT_ID, client_secret=SECRET))
    try:
        token = session.get_token()
        assert repr(session) == f"AuthSession(endpoint={server.target!r}, auth_type='ClientSecret')"
        assert token.access_token not in repr(session.stats)
    finally:
        session.close()
