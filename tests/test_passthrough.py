"""Passthrough (token handed in, token file re-read on rejection, env var) and the NoAuth mode."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from flyteauth_core import AuthConfig, AuthSession, Token
from flyteauth_core.errors import ConfigError, FlyteAuthError
from flyteauth_core.testing import ECHO, FlyteTestServer

GOOD = {"tok-A", "tok-B", "tok-env"}


@pytest.fixture
def server() -> Iterator[FlyteTestServer]:
    with FlyteTestServer(lambda t: None if t in GOOD else "unknown token") as srv:
        srv.record_metadata = True
        yield srv


def call(session: AuthSession) -> bytes:
    result: bytes = session.channel().unary_unary(ECHO["unary"])(b"x", timeout=10)
    return result


def session_for(server: FlyteTestServer, **kwargs: Any) -> AuthSession:
    return AuthSession(AuthConfig(endpoint=server.target, insecure=True, **kwargs), store="memory")


def test_token_handed_in_is_sent(server: FlyteTestServer) -> None:
    with session_for(server, auth_type="Passthrough", token="tok-A") as session:
        assert call(session) == b"x"
        assert ("flyte-authorization", "Bearer tok-A") in server.seen_metadata[-1]
        assert session.stats.token_requests == 1


def test_a_token_alone_infers_passthrough(server: FlyteTestServer) -> None:
    with session_for(server, token="tok-A") as session:
        assert session.auth_type == "Passthrough"
        assert call(session) == b"x"


def test_token_file_is_reread_after_a_rejection(server: FlyteTestServer, tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("tok-A\n")
    with session_for(server, auth_type="Passthrough", token_file_path=str(path)) as session:
        assert call(session) == b"x"
        path.write_text("tok-B\n")  # a sidecar rotated it
        assert call(session) == b"x"
        assert ("flyte-authorization", "Bearer tok-A") in server.seen_metadata[-1]  # cached until rejected
        server.revoke("tok-A")
        assert call(session) == b"x"  # rejected -> file re-read -> retried with tok-B
        assert ("flyte-authorization", "Bearer tok-B") in server.seen_metadata[-1]


def test_rejected_token_that_was_not_replaced_fails_clearly(server: FlyteTestServer) -> None:
    with session_for(server, auth_type="Passthrough", token="tok-A") as session:
        call(session)
        server.revoke("tok-A")
        with pytest.raises((FlyteAuthError, grpc.RpcError)) as info:
            call(session)
        if isinstance(info.value, FlyteAuthError):
            assert "was rejected" in str(info.value) and "tok-A" not in str(info.value)


def test_env_var(server: FlyteTestServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_FLYTE_TOKEN", "tok-env\n")
    with session_for(server, auth_type="Passthrough", token_env_var="MY_FLYTE_TOKEN") as session:
        assert call(session) == b"x"


def test_unset_env_var_names_it(server: FlyteTestServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MY_FLYTE_TOKEN", raising=False)
    with session_for(server, auth_type="Passthrough", token_env_var="MY_FLYTE_TOKEN") as session, \
            pytest.raises(ConfigError, match="MY_FLYTE_TOKEN"):
        session.get_token()


def test_missing_token_file_names_it(server: FlyteTestServer, tmp_path: Path) -> None:
    with session_for(server, auth_type="Passthrough", token_file_path=str(tmp_path / "nope")) as session, \
            pytest.raises(ConfigError, match="token file"):
        session.get_token()


def test_passthrough_without_a_token_is_a_config_error(server: FlyteTestServer) -> None:
    session = session_for(server, auth_type="Passthrough")  # checked on first use: no I/O in the constructor
    with pytest.raises(ConfigError, match="needs a token"):
        session.get_token()


def test_token_is_not_in_repr() -> None:
    config = AuthConfig(endpoint="a:1", token="repr-canary-Tk1")
    assert "repr-canary-Tk1" not in repr(config)


class ExplodingStore:
    def __init__(self) -> None:
        self.calls = 0

    def load(self, key: str) -> Token | None:
        self.calls += 1
        raise AssertionError("NoAuth must not touch the store")

    def save(self, key: str, token: Token) -> None:
        self.load(key)

    def delete(self, key: str) -> None:
        self.load(key)


@pytest.mark.parametrize("name", ["NoAuth", "None", "no_auth", "anonymous"])
def test_no_auth_sends_nothing_and_touches_no_store(server: FlyteTestServer, name: str) -> None:
    store = ExplodingStore()
    with AuthSession(AuthConfig(endpoint=server.target, insecure=True, auth_type=name), store=store) as session:
        assert session.auth_type == "NoAuth" and session.store is None
        with pytest.raises(grpc.RpcError) as info:  # this server demands a token; a sandbox would not
            call(session)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert not any("authorization" in key for key, _ in server.seen_metadata[-1])
        assert session.stats.token_requests == 0
    assert store.calls == 0
    assert server.stats["discovery_v2"] == server.stats["discovery_v1"] == 0  # no discovery either
    assert server.stats["calls"] == 1  # no retry


def test_no_auth_from_a_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flyteauth_core.config import load_config

    (tmp_path / "config.yaml").write_text("admin:\n  endpoint: localhost:30080\n  insecure: true\n  authType: NoAuth\n")
    config = load_config(tmp_path / "config.yaml", env={})
    with AuthSession(config) as session:
        assert session.anonymous
        with pytest.raises(ConfigError, match="sends no token"):
            session.get_token()
