"""ExternalCommand against real scripts (tests/scripts): raw and JSON tokens cached, failures typed."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from flyteauth_core import AuthConfig, AuthSession
from flyteauth_core.config import load_config
from flyteauth_core.errors import CommandError, ConfigError, TokenTimeoutError
from flyteauth_core.testing import ECHO, FlyteTestServer
from flyteauth_providers.external_command import run_token_command

SCRIPTS = Path(__file__).parent / "scripts"


def script(name: str, *args: str) -> tuple[str, ...]:
    return (sys.executable, str(SCRIPTS / name), *args)


def invocations(counter: Path) -> int:
    return len(counter.read_text().splitlines()) if counter.exists() else 0


@pytest.fixture
def counter(tmp_path: Path) -> Path:
    return tmp_path / "count"


@pytest.fixture
def server() -> Iterator[FlyteTestServer]:
    accepted = {f"{prefix}-{n}" for prefix in ("raw-token", "json-token") for n in range(1, 10)}
    with FlyteTestServer(lambda t: None if t in accepted else "unknown token") as srv:
        yield srv


@pytest.fixture
def make_session(server: FlyteTestServer) -> Iterator[Callable[..., AuthSession]]:
    sessions: list[AuthSession] = []

    def make(command: tuple[str, ...], **kwargs: Any) -> AuthSession:
        config = AuthConfig(endpoint=server.target, insecure=True, auth_type="ExternalCommand",
                            command=command, **kwargs)
        session = AuthSession(config, store="memory")
        sessions.append(session)
        return session

    yield make
    for session in sessions:
        session.close()


def test_raw_token_is_cached_until_the_server_rejects_it(make_session: Callable[..., AuthSession],
                                                         server: FlyteTestServer, counter: Path) -> None:
    session = make_session(script("raw_token.py", str(counter)))
    unary = session.channel().unary_unary(ECHO["unary"])
    for _ in range(5):
        assert unary(b"ping", timeout=10) == b"ping"
    assert invocations(counter) == 1
    token = session.get_token()
    assert token.access_token == "raw-token-1" and token.expires_at is None  # until rejected
    server.revoke("raw-token-1")
    assert unary(b"again", timeout=10) == b"again"  # rejected -> command runs again -> retried
    assert invocations(counter) == 2
    assert session.get_token().access_token == "raw-token-2"


def test_json_token_with_expires_in_is_cached_until_its_expiry(make_session: Callable[..., AuthSession],
                                                               counter: Path) -> None:
    session = make_session(script("json_token.py", str(counter), "3600"))
    before = time.time()
    unary = session.channel().unary_unary(ECHO["unary"])
    for _ in range(5):
        unary(b"x", timeout=10)
    token = session.get_token()
    assert invocations(counter) == 1
    assert token.access_token == "json-token-1"
    assert token.expires_at is not None and before + 3590 < token.expires_at < time.time() + 3601


def test_json_token_with_expires_at_is_refreshed_after_it(make_session: Callable[..., AuthSession],
                                                          counter: Path) -> None:
    session = make_session(script("json_token.py", str(counter), f"at:{time.time() + 1.5}"))
    assert session.get_token().access_token == "json-token-1"
    assert session.get_token().access_token == "json-token-1"
    assert invocations(counter) == 1
    time.sleep(1.6)
    # expired: the command runs again, and prints the same (now past) expires_at: a typed error, not a
    # token that every server would reject (issue 9)
    with pytest.raises(CommandError, match="already expired"):
        session.get_token()
    assert invocations(counter) == 2


def test_command_past_its_timeout_is_killed_with_a_typed_error(make_session: Callable[..., AuthSession],
                                                                counter: Path) -> None:
    session = make_session(script("sleep_token.py", str(counter), "60"), command_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(TokenTimeoutError) as info:
        session.get_token()
    assert time.monotonic() - started < 5
    assert "did not finish within 1s" in str(info.value)
    assert "waiting for the SSO helper" in str(info.value)  # stderr so far is shown


def test_timeout_through_a_grpc_call(make_session: Callable[..., AuthSession], counter: Path) -> None:
    session = make_session(script("sleep_token.py", str(counter), "60"), command_timeout=0.5)
    started = time.monotonic()
    with pytest.raises((TokenTimeoutError, grpc.RpcError)):
        session.channel().unary_unary(ECHO["unary"])(b"x", timeout=10)
    assert time.monotonic() - started < 5


def test_non_zero_exit_shows_trimmed_stderr_but_never_stdout(counter: Path) -> None:
    with pytest.raises(CommandError) as info:
        run_token_command(script("fail_token.py", str(counter)), timeout=10)
    error = info.value
    assert error.exit_code == 3 and error.command == Path(sys.executable).name
    assert error.stderr == "error: refresh token expired; run `acme login`"
    assert "exited with status 3" in str(error)
    assert "stdout-secret-must-not-leak-7Hq" not in str(error) + repr(error) + error.stderr


def test_garbage_output_is_a_typed_error_without_echoing_it(counter: Path) -> None:
    started = time.monotonic()
    with pytest.raises(CommandError, match="neither a token nor a JSON token response") as info:
        run_token_command(script("garbage_token.py", str(counter)), timeout=10)
    assert "Welcome" not in str(info.value)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize(
    ("stdout", "match"),
    [(b"", "printed nothing"), (b"{not json", "looks like JSON but is not"), (b'{"token": "x"}', "no access_token"),
     (b'{"access_token": "a", "expires_in": "soon"}', "invalid 'expires_in'"), (b"two words", "neither")],
)
def test_unusable_output_forms(stdout: bytes, match: str) -> None:
    from flyteauth_providers.external_command import parse_command_output

    with pytest.raises(CommandError, match=match):
        parse_command_output(stdout, name="acme", key="admin.command", now=time.time())


def test_a_missing_program_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="could not be started"):
        run_token_command([str(tmp_path / "no-such-program")], timeout=5)


def test_no_shell_is_involved(counter: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    token = run_token_command(script("raw_token.py", str(counter), f"ok$(touch{marker})"), timeout=10)
    assert token.access_token.startswith("ok$(touch")  # printed literally: no shell expanded it
    assert not marker.exists()


def test_failures_through_the_session_are_typed(make_session: Callable[..., AuthSession], counter: Path) -> None:
    with pytest.raises(CommandError):
        make_session(script("fail_token.py", str(counter))).get_token()
    with pytest.raises(CommandError):
        make_session(script("garbage_token.py", str(counter))).get_token()


def test_alias_and_config_from_env(server: FlyteTestServer, counter: Path, monkeypatch: pytest.MonkeyPatch,
                                   tmp_path: Path) -> None:
    import json

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    env = {"FLYTE_ADMIN_ENDPOINT": server.target, "FLYTE_ADMIN_INSECURE": "true",
           "FLYTE_AUTH_TYPE": "external_process",
           "FLYTE_AUTH_COMMAND": json.dumps(list(script("raw_token.py", str(counter))))}
    config = load_config(env=env)
    assert config.sources["command"] == "$FLYTE_AUTH_COMMAND"
    with AuthSession(config, store="memory") as session:
        assert session.auth_type == "ExternalCommand"
        assert session.channel().unary_unary(ECHO["unary"])(b"x", timeout=10) == b"x"
    assert invocations(counter) == 1


def test_missing_command_is_a_config_error(server: FlyteTestServer) -> None:
    session = AuthSession(AuthConfig(endpoint=server.target, insecure=True, auth_type="ExternalCommand"))
    with pytest.raises(ConfigError, match="needs a command"):  # on first use: the constructor does no I/O
        session.get_token()
