"""The redis token store against a real redis-server: encryption at rest, rotation, the fleet lock,
outages (stopped and hung Redis), configuration errors, and the shared discovery cache."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flyteauth_core import AuthConfig, AuthSession
from flyteauth_core.errors import ConfigError, FlyteAuthError
from flyteauth_core.token import Token
from flyteauth_providers.redis_store import RedisTokenStore, redis_settings

from ._leakscan import register_secret
from ._redis import RedisServer

Fernet = pytest.importorskip("cryptography.fernet").Fernet
KEY = "flyteauth:dns:///flyte.example.com:clientsecret:0123456789abcdef"
# Looks like a JWT, as IdP tokens do: the raw Redis value must not show it (nor its `eyJ` prefix).
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJmbGVldCIsImV4cCI6OTk5OTk5OTk5OX0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


def make_store(server: RedisServer, tmp_path: Path, keys: list[bytes] | None = None, **options: Any) -> RedisTokenStore:
    tmp_path.mkdir(parents=True, exist_ok=True)
    key_file = tmp_path / "redis.key"
    if keys is None:
        keys = [Fernet.generate_key()]
    for key in keys:
        register_secret(key.decode(), "a Fernet key of the redis store")
    if keys:
        key_file.write_bytes(b"\n".join(keys) + b"\n")
        key_file.chmod(0o600)
        options.setdefault("redisEncryptionKeyFile", str(key_file))
    options.setdefault("redisURL", server.url)
    options.setdefault("tokenStorePath", str(tmp_path / "tokens"))
    return RedisTokenStore(AuthConfig(endpoint="dns:///flyte.example.com", options=options))


def token(access: str = JWT, ttl: float = 60, refresh: str | None = None) -> Token:
    register_secret(access)
    register_secret(refresh)
    return Token(access_token=access, expires_at=time.time() + ttl, refresh_token=refresh)


def test_raw_value_is_encrypted_and_expires_with_the_token(redis_fresh: RedisServer, tmp_path: Path) -> None:
    store = make_store(redis_fresh, tmp_path)
    store.save(KEY, token(ttl=30))
    raw = redis_fresh.client().get(store.data_key(KEY))
    assert raw is not None
    assert JWT.encode() not in raw and b"eyJ" not in raw
    assert KEY.encode() not in raw  # nor which endpoint it is for
    assert store.load(KEY).access_token == JWT  # type: ignore[union-attr]
    assert 25_000 < redis_fresh.client().pttl(store.data_key(KEY)) <= 30_000
    # a refresh token outlives the access token: no TTL then
    store.save(KEY, token(ttl=30, refresh="refresh-token-shared-by-machines"))
    assert redis_fresh.client().pttl(store.data_key(KEY)) == -1
    store.delete(KEY)
    assert store.load(KEY) is None


def test_key_rotation_first_key_encrypts_all_decrypt(redis_fresh: RedisServer, tmp_path: Path) -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    make_store(redis_fresh, tmp_path / "a", [old]).save(KEY, token())
    rotated = make_store(redis_fresh, tmp_path / "b", [new, old])
    assert rotated.load(KEY).access_token == JWT  # type: ignore[union-attr]
    rotated.save(KEY, token())
    Fernet(new).decrypt(redis_fresh.client().get(rotated.data_key(KEY)))  # written with the first key
    assert make_store(redis_fresh, tmp_path / "c", [new]).load(KEY) is not None


def test_wrong_key_is_a_miss_and_one_warning(redis_fresh: RedisServer, tmp_path: Path,
                                             caplog: pytest.LogCaptureFixture) -> None:
    make_store(redis_fresh, tmp_path / "a").save(KEY, token())
    other = make_store(redis_fresh, tmp_path / "b")
    with caplog.at_level(logging.WARNING, logger="flyteauth"):
        assert other.load(KEY) is None
        assert other.load(KEY) is None
    warnings = [r for r in caplog.records if "cannot be decrypted" in r.getMessage()]
    assert len(warnings) == 1
    # plaintext readers see an encrypted value as unreadable, not as a crash
    plain = make_store(redis_fresh, tmp_path / "c", [], redisAllowPlaintext=True)
    assert plain.load(KEY) is None


def test_plaintext_needs_an_explicit_opt_in(redis_fresh: RedisServer, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="encryption key"):
        make_store(redis_fresh, tmp_path, [])
    store = make_store(redis_fresh, tmp_path, [], redisAllowPlaintext="true")
    store.save(KEY, token())
    assert JWT.encode() in redis_fresh.client().get(store.data_key(KEY))
    assert "PLAINTEXT" in store.describe()


def test_bad_configuration_is_a_clear_config_error(tmp_path: Path) -> None:
    def settings(**options: Any) -> Any:
        return redis_settings(AuthConfig(endpoint="dns:///x", options=options), env={})

    with pytest.raises(ConfigError, match="redisURL"):
        settings(redisAllowPlaintext=True)
    with pytest.raises(ConfigError, match="scheme"):
        settings(redisURL="http://127.0.0.1:6379", redisAllowPlaintext=True)
    with pytest.raises(ConfigError, match="boolean"):
        settings(redisURL="redis://127.0.0.1", redisAllowPlaintext="maybe")
    key_file = tmp_path / "key"
    key_file.write_text("not-a-fernet-key\n")
    key_file.chmod(0o600)
    with pytest.raises(ConfigError, match="line 1") as bad:
        settings(redisURL="redis://127.0.0.1", redisEncryptionKeyFile=str(key_file))
    assert "not-a-fernet-key" not in str(bad.value)
    key_file.write_bytes(Fernet.generate_key())
    key_file.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        settings(redisURL="redis://127.0.0.1", redisEncryptionKeyFile=str(key_file))
    with pytest.raises(ConfigError, match="redisLockTTL"):
        settings(redisURL="redis://127.0.0.1", redisAllowPlaintext=True, redisLockTTL="-1s")


def test_every_key_has_its_environment_form(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flyteauth_core import load_config

    key = Fernet.generate_key().decode()
    env = {"FLYTEAUTH_REDIS_URL": "rediss://:pw-in-url@redis.example.com:6380/2",
           "FLYTEAUTH_REDIS_ENCRYPTION_KEY": key, "FLYTEAUTH_REDIS_LOCK_TTL": "3s",
           "FLYTEAUTH_REDIS_TIMEOUT": "150ms", "FLYTEAUTH_REDIS_KEY_PREFIX": "team-a:",
           "FLYTEAUTH_REDIS_FALLBACK": "memory", "FLYTEAUTH_REDIS_PASSWORD": "redis-password-from-env"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    register_secret(key)
    register_secret(env["FLYTEAUTH_REDIS_PASSWORD"])
    # the environment wins over the file, as for every other key
    config_file = tmp_path / "config.yaml"
    config_file.write_text("flyteauth:\n  endpoint: dns:///x\n  authType: ClientSecret\n  tokenStore: redis\n"
                           "  redisURL: redis://ignored\n  redisLockTTL: 9s\n")
    config = load_config(str(config_file))
    assert not [p for p in config.problems if "redis" in p]  # declared keys are never "unknown"
    s = redis_settings(config, env={})
    assert (s.url, s.lock_ttl, s.timeout, s.key_prefix, s.fallback) == (env["FLYTEAUTH_REDIS_URL"], 3.0, 0.15,
                                                                        "team-a:", "memory")
    assert s.keys == (key.encode(),) and s.password == env["FLYTEAUTH_REDIS_PASSWORD"]
    # a config built in code reads the environment too; its own options win
    s = redis_settings(AuthConfig(endpoint="dns:///x", options={"redisLockTTL": "4s"}))
    assert (s.url, s.lock_ttl) == (env["FLYTEAUTH_REDIS_URL"], 4.0)
    store = RedisTokenStore(AuthConfig(endpoint="dns:///x"))
    shown = repr(store) + store.describe() + repr(store.settings)
    assert "pw-in-url" not in shown and key not in shown and "redis-password-from-env" not in shown


def test_redis_down_falls_back_to_the_host_file_store_and_recovers(
    redis_fresh: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flyteauth_providers.redis_store as module

    monkeypatch.setattr(module, "RETRY_INTERVAL", 0.05)
    store = make_store(redis_fresh, tmp_path)
    redis_fresh.stop()
    with caplog.at_level(logging.WARNING, logger="flyteauth"):
        started = time.monotonic()
        store.save(KEY, token())
        assert store.load(KEY).access_token == JWT  # type: ignore[union-attr]  # from the file fallback
        with store.lock(KEY):  # the file lock
            pass
        time.sleep(0.1)
        assert store.load(KEY) is not None
        assert time.monotonic() - started < 2
        assert len([r for r in caplog.records if "failed on" in r.getMessage()]) == 1
        redis_fresh.start()
        time.sleep(0.1)
        assert store.load(KEY) is None  # Redis again (it lost its data)
        store.save(KEY, token())
        assert redis_fresh.client().get(store.data_key(KEY)) is not None
    assert any("answers again" in r.getMessage() for r in caplog.records)


def test_a_hung_redis_costs_one_timeout_not_a_failed_call(redis_fresh: RedisServer, tmp_path: Path) -> None:
    store = make_store(redis_fresh, tmp_path, redisTimeout="200ms")
    store.save(KEY, token())
    store.load(KEY)  # connected
    redis_fresh.pause()
    try:
        started = time.monotonic()
        assert store.load(KEY) is None  # the file fallback is empty: a miss, after one 200 ms timeout
        store.save(KEY, token())
        assert store.load(KEY) is not None
        assert time.monotonic() - started < 1.5
    finally:
        redis_fresh.resume()


def _hold_lock_then_hang(url: str, key_file: str, tokens: str, ready: Any) -> None:
    store = RedisTokenStore(AuthConfig(endpoint="dns:///x", options={
        "redisURL": url, "redisEncryptionKeyFile": key_file, "redisLockTTL": "1s", "tokenStorePath": tokens}))
    with store.lock(KEY):
        ready.set()
        time.sleep(60)


def test_lock_excludes_others_is_renewed_and_a_killed_holder_frees_it_after_the_ttl(
    redis_fresh: RedisServer, tmp_path: Path
) -> None:
    store = make_store(redis_fresh, tmp_path, redisLockTTL="1s", tokenStoreLockTimeout="5s")
    client = redis_fresh.client()
    with store.lock(KEY):
        holder = client.get(store.lock_key(KEY)).decode()
        assert holder.split(":")[1] == str(os.getpid())
        time.sleep(1.5)  # longer than the TTL: renewed
        assert client.get(store.lock_key(KEY)).decode() == holder
    assert client.get(store.lock_key(KEY)) is None  # released

    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    proc = ctx.Process(target=_hold_lock_then_hang,
                       args=(redis_fresh.url, str(tmp_path / "redis.key"), str(tmp_path / "t2"), ready))
    proc.start()
    try:
        assert ready.wait(10)
        pid = int(client.get(store.lock_key(KEY)).decode().split(":")[1])
        assert pid == proc.pid
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        with store.lock(KEY):
            waited = time.monotonic() - killed
        assert waited <= 1.0 + 0.5  # the lock TTL, plus polling
    finally:
        proc.kill()
        proc.join()


def test_a_waiter_returns_as_soon_as_another_process_stores_a_new_token(redis_fresh: RedisServer,
                                                                      tmp_path: Path) -> None:
    import threading

    keys = [Fernet.generate_key()]
    store = make_store(redis_fresh, tmp_path, keys, tokenStoreLockTimeout="10s")
    other = make_store(redis_fresh, tmp_path / "another-host", keys)  # same host: waits for the host lock
    store.save(KEY, token("old-token-value-1234"))
    held = threading.Event()
    done = threading.Event()

    def holder() -> None:
        with other.lock(KEY):
            held.set()
            time.sleep(0.3)
            other.save(KEY, token("new-token-value-5678"))
            done.wait(5)  # keeps holding the lock

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    started = time.monotonic()
    with store.lock(KEY):
        assert store.load(KEY).access_token == "new-token-value-5678"  # type: ignore[union-attr]
    assert time.monotonic() - started < 2
    done.set()
    thread.join()


def test_hot_path_never_touches_redis(redis_fresh: RedisServer, tmp_path: Path,
                                      flyte_server: Callable[..., Any]) -> None:
    server = flyte_server()
    store = make_store(redis_fresh, tmp_path)
    from ._idp import CI_BASIC

    config = AuthConfig(endpoint=server.target, insecure=True, auth_type="ClientSecret", client_id=CI_BASIC[0],
                        client_secret=CI_BASIC[1])
    with AuthSession(config, store=store) as session:
        session.manager.metadata()
        sent = store.commands
        for _ in range(10_000):
            session.manager.metadata()
        assert store.commands == sent


def test_discovery_is_shared_through_redis(redis_fresh: RedisServer, tmp_path: Path,
                                           flyte_server: Callable[..., Any]) -> None:
    server = flyte_server()
    from ._idp import CI_BASIC

    config = AuthConfig(endpoint=server.target, insecure=True, auth_type="ClientSecret", client_id=CI_BASIC[0],
                        client_secret=CI_BASIC[1])
    keys = [Fernet.generate_key()]
    for _ in range(3):
        with AuthSession(config, store=make_store(redis_fresh, tmp_path, keys)) as session:
            assert session.server_info().token_endpoint
    assert server.stats["discovery_v2"] == 2  # one process's 2 RPCs; the others read Redis
    off = AuthConfig(endpoint=server.target, insecure=True, auth_type="ClientSecret", client_id=CI_BASIC[0],
                     client_secret=CI_BASIC[1], options={"discoveryCacheTTL": 0})
    with AuthSession(off, store=make_store(redis_fresh, tmp_path, keys)) as session:
        session.server_info()
    assert server.stats["discovery_v2"] == 4


def test_tls_and_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from ._idp import make_test_ca

    ca, cert, key = make_test_ca(tmp_path)
    with RedisServer(password="redis-password-for-tests", tls=(str(ca), str(cert), str(key))) as server:
        register_secret(server.password)
        # the password from the environment, not the URL
        monkeypatch.setenv("FLYTEAUTH_REDIS_PASSWORD", "redis-password-for-tests")
        url = server.url.replace(":redis-password-for-tests@", "")
        assert url.startswith("rediss://")
        store = make_store(server, tmp_path / "a", redisURL=url)
        store.save(KEY, token())
        assert store.load(KEY).access_token == JWT  # type: ignore[union-attr]
        assert server.client().get(store.data_key(KEY)) is not None  # really in Redis, over TLS
        monkeypatch.setenv("FLYTEAUTH_REDIS_PASSWORD", "a-wrong-password-123")
        wrong = make_store(server, tmp_path / "b", redisURL=url, redisFallback="memory")
        with caplog.at_level(logging.WARNING, logger="flyteauth"):
            assert wrong.load(KEY) is None  # refused: the memory fallback, one warning, no crash
        assert any("failed on load" in r.getMessage() for r in caplog.records)
        assert "wrong-password" not in caplog.text


def test_sentinel_url_finds_the_master(redis_fresh: RedisServer, tmp_path: Path) -> None:
    import shutil
    import subprocess

    from ._redis import free_port

    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
                    f"sentinel monitor fleet 127.0.0.1 {redis_fresh.port} 1\n")
    exe = shutil.which("redis-server")
    assert exe is not None
    proc = subprocess.Popen([exe, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        store = make_store(redis_fresh, tmp_path, redisURL=f"redis+sentinel://127.0.0.1:{port}/fleet/0")
        deadline = time.monotonic() + 10
        while redis_fresh.client().get(store.data_key(KEY)) is None and time.monotonic() < deadline:
            store.save(KEY, token())  # until the sentinel answers (the file fallback meanwhile)
            time.sleep(0.2)
        assert redis_fresh.client().get(store.data_key(KEY)) is not None  # it reached the monitored master
        assert store.load(KEY).access_token == JWT  # type: ignore[union-attr]
    finally:
        proc.kill()
        proc.wait()


REDIS_SCRIPT = """
import sys
from flyteauth_core import AuthConfig, AuthSession
config = AuthConfig(endpoint={target!r}, insecure=True, auth_type="Pkce", store="redis")
with AuthSession(config, interactive=False) as session:
    sys.stdin.readline()  # start together
    print(session.get_token().access_token[-12:])
"""


def test_a_shared_login_rotates_its_refresh_token_once_across_hosts(redis_fresh: RedisServer, tmp_path: Path,
                                                                    fake_peers: Any) -> None:
    """A user's login in Redis, 8 processes on 4 "hosts" after expiry: one refresh, no reuse of a rotated one."""

    from ._interactive_helpers import HttpBrowser, session_for
    from .test_refresh_tokens import start_processes

    fake, server = fake_peers()
    with session_for(server, tmp_path, browserOpener=HttpBrowser()) as session:
        login = session.login()
        key = session.identity().store_key
    keys = [Fernet.generate_key()]
    store = make_store(redis_fresh, tmp_path / "shared", keys)
    store.save(key, Token(login.access_token, expires_at=time.time() - 60, refresh_token=login.refresh_token))
    env = {"FLYTEAUTH_REDIS_URL": redis_fresh.url, "FLYTEAUTH_REDIS_ENCRYPTION_KEY": keys[0].decode()}
    outputs = []
    procs_env = [{**env, "FLYTEAUTH_TOKEN_DIR": str(tmp_path / f"host-{i}")} for i in range(4)]
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for result in pool.map(lambda e: start_processes(2, REDIS_SCRIPT.format(target=server.target), e),
                               procs_env):
            outputs += result
    assert fake.stats["grant:refresh_token"] == 1, dict(fake.stats)
    assert fake.reuse_detected == 0 and len(set(outputs)) == 1
    assert store.load(key).refresh_token != login.refresh_token  # type: ignore[union-attr]  # rotated, stored


def _load_in_child(store: RedisTokenStore, conn: Any) -> None:
    store.fallback()  # built under the store's guard
    token = store.load(KEY)
    with store.lock(KEY):
        store.save(KEY, Token("written-by-the-forked-child", expires_at=time.time() + 60))
    conn.send(token.access_token if token else None)


def test_a_forked_child_uses_the_store_while_the_parent_holds_its_guard(redis_fresh: RedisServer,
                                                                       tmp_path: Path) -> None:
    store = make_store(redis_fresh, tmp_path)
    store.save(KEY, token())
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe()
    with store._guard:  # another thread inside the store at fork time
        proc = ctx.Process(target=_load_in_child, args=(store, child))
        proc.start()
    assert parent.poll(10) and parent.recv() == JWT
    proc.join(5)
    assert store.load(KEY).access_token == "written-by-the-forked-child"  # type: ignore[union-attr]


def test_yaml_config_selects_the_redis_store_end_to_end(redis_fresh: RedisServer, tmp_path: Path,
                                                        flyte_server: Callable[..., Any]) -> None:
    from flyteauth_core import load_config

    from ._idp import CI_BASIC

    server = flyte_server()
    key_file = tmp_path / "fleet.key"
    key_file.write_bytes(Fernet.generate_key())
    key_file.chmod(0o600)
    secret = tmp_path / "secret"
    secret.write_text(CI_BASIC[1])
    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        f"admin:\n  endpoint: {server.target}\n  insecure: true\n  authType: ClientSecret\n"
        f"  clientId: {CI_BASIC[0]}\n  clientSecretLocation: {secret}\n  tokenStore: redis\n"
        f"  redisURL: {redis_fresh.url}\n  redisEncryptionKeyFile: {key_file}\n  redisLockTTL: 5s\n"
        f"  tokenStorePath: {tmp_path / 'tokens'}\n")
    config = load_config(str(config_file))
    with AuthSession(config) as session:
        assert isinstance(session.store, RedisTokenStore) and session.store.settings.lock_ttl == 5.0
        first = session.get_token()
    with AuthSession(load_config(str(config_file))) as other:  # another process would do the same
        assert other.get_token().access_token == first.access_token
        assert other.stats.token_requests == 0 and other.stats.loaded_from_store == 1


# -- issue 16 item 8: a malformed redisURL --------------------------------------------------------------------
@pytest.mark.parametrize("url", ["redis://redis.internal:63a79/0", "redis://redis.internal:99999/0",
                                 "redis+sentinel://127.0.0.1:26379,127.0.0.1:x/fleet/0", "redis://h:6379/zero",
                                 "redis://h1:6379,h2:6379/0"])  # several hosts without redisCluster
def test_a_malformed_redis_url_is_a_config_error_naming_the_key(url: str, tmp_path: Path) -> None:
    """0.2.0 accepted these, then raised an untyped ValueError at the first refresh (and the manager went on
    without the fleet lock)."""
    options = {"redisURL": url, "redisAllowPlaintext": True, "tokenStorePath": str(tmp_path / "tokens")}
    with pytest.raises(ConfigError, match="redisURL"):
        redis_settings(AuthConfig(endpoint="dns:///x", options=options))
    session = AuthSession(AuthConfig(endpoint="dns:///x", auth_type="ClientSecret", client_id="c",
                                     client_secret="s", store="redis", options=options))
    with pytest.raises(ConfigError, match="redisURL"):
        session.get_token()  # built on first use: a ConfigError, before any token request


def test_flyteauth_config_reports_a_malformed_redis_url(tmp_path: Path) -> None:
    from ._interactive_helpers import flyteauth

    config = tmp_path / "config.yaml"
    config.write_text("admin:\n  endpoint: dns:///flyte.example.com\n  authType: Pkce\n  clientId: c\n"
                      "  tokenStore: redis\n  redisURL: redis://:pw-in-a-bad-url@redis.internal:63a79/0\n"
                      "  redisAllowPlaintext: true\n")
    result = flyteauth("config", "--config", str(config), env={"HOME": str(tmp_path)})
    assert result.returncode != 0, result.stdout
    errors = [line for line in result.stdout.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "redisURL" in errors[0] and "malformed port '63a79'" in errors[0], result.stdout
    assert "pw-in-a-bad-url" not in result.stdout + result.stderr and "Traceback" not in result.stderr


# -- issue 16 item 5: a fleet lock that holds ----------------------------------------------------------------
def test_a_write_stall_keeps_a_waiter_on_the_host_waiting_for_the_holder(redis_fresh: RedisServer,
                                                                        tmp_path: Path) -> None:
    """(a) `CLIENT PAUSE 300 WRITE` while A holds the fleet lock: on 0.2.0 B's SET NX timed out and B took the
    fallback's file lock, which A did not hold, so both refreshed at once.  Now A holds the host lock too."""
    import threading

    keys = [Fernet.generate_key()]
    a = make_store(redis_fresh, tmp_path / "host", keys)
    b = make_store(redis_fresh, tmp_path / "host", keys)  # another process on the same host
    holding, released = threading.Event(), threading.Event()
    seen: dict[str, Any] = {}

    def holder() -> None:
        with a.lock(KEY):
            holding.set()
            time.sleep(0.8)  # the refresh, while Redis stalls
            a.save(KEY, token("token-saved-by-the-holder"))
            released.set()

    thread = threading.Thread(target=holder)
    thread.start()
    assert holding.wait(10)
    redis_fresh.command("CLIENT", "PAUSE", "300", "WRITE")
    with b.lock(KEY):
        seen["holder_done"] = released.is_set()
        seen["token"] = b.load(KEY)
    thread.join(10)
    assert seen["holder_done"], "B entered while A still held the lock"
    assert seen["token"] is not None and seen["token"].access_token == "token-saved-by-the-holder"


def _hold_stop_then_save(url: str, key_file: str, tokens: str, ready: Any) -> None:
    store = RedisTokenStore(AuthConfig(endpoint="dns:///x", options={
        "redisURL": url, "redisEncryptionKeyFile": key_file, "redisLockTTL": "1s", "tokenStorePath": tokens}))
    with store.lock(KEY):
        ready.set()
        os.kill(os.getpid(), signal.SIGSTOP)  # paused past redisLockTTL, between its refresh and its save
        store.save(KEY, Token("saved-by-the-paused-holder", expires_at=time.time() + 60))
    os._exit(0)


def _wait_stopped(pid: int) -> None:
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "T":
        assert time.monotonic() < deadline, "the process did not stop"
        time.sleep(0.01)


def test_a_holder_paused_past_the_lock_ttl_never_overwrites_the_newer_record(redis_fresh: RedisServer,
                                                                            tmp_path: Path) -> None:
    """(b) SIGSTOP the holder past redisLockTTL, let another process take the lock and save, SIGCONT: the
    fenced save refuses the stale holder's write (0.2.0 ignored its failed renewals and overwrote)."""
    store = make_store(redis_fresh, tmp_path, redisLockTTL="1s")
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    proc = ctx.Process(target=_hold_stop_then_save,
                       args=(redis_fresh.url, str(tmp_path / "redis.key"), str(tmp_path / "host-a"), ready))
    proc.start()
    try:
        assert ready.wait(10)
        assert proc.pid is not None
        _wait_stopped(proc.pid)
        time.sleep(1.3)  # past the lock's TTL
        with store.lock(KEY):  # the paused holder's lock expired: this process holds it now
            store.save(KEY, token("saved-by-the-next-holder"))
        os.kill(proc.pid, signal.SIGCONT)
        proc.join(10)
        assert proc.exitcode == 0
        assert store.load(KEY).access_token == "saved-by-the-next-holder"  # type: ignore[union-attr]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)  # type: ignore[arg-type]
        proc.kill()
        proc.join()


ROTATING_SCRIPT = """
import os, signal, sys
from flyteauth_core import AuthConfig, AuthSession
from flyteauth_providers.redis_store import RedisTokenStore
if {stop!r}:
    load = RedisTokenStore.load
    def paused_load(self, key):
        value = load(self, key)  # the expired record, read under the fleet lock...
        RedisTokenStore.load = load
        os.kill(os.getpid(), signal.SIGSTOP)  # ...and paused past redisLockTTL before refreshing it
        return value
    RedisTokenStore.load = paused_load
config = AuthConfig(endpoint={target!r}, insecure=True, auth_type="Pkce", store="redis")
with AuthSession(config, interactive=False) as session:
    print(session.get_token().access_token[-16:], flush=True)
"""


def _http_browser(idp: Any) -> Any:
    """A ``browserOpener`` that plays the user over HTTP: logs in on the IdP's pages and follows its redirect
    to our loopback callback (no proxy, whatever the environment says)."""
    import urllib.request

    from ._idp import http_login

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def browser(url: str) -> bool:
        opener.open(http_login(idp, url), timeout=10).read()
        return True

    return browser


@pytest.mark.idp
def test_a_rotating_grant_is_refreshed_once_when_its_lock_holder_was_paused(
        redis_fresh: RedisServer, tmp_path: Path, native_peers: Any) -> None:
    """The real IdP rotates the native client's refresh tokens and revokes the grant when a used one comes
    back.  Holder A reads the expired record under the fleet lock and is SIGSTOPped past redisLockTTL; B
    takes over and refreshes; A, SIGCONTed, notices it lost the lock and reads B's token instead of sending
    the used refresh token (0.2.0: a second refresh, reuse detected, grant revoked)."""
    import subprocess
    import sys

    from ._interactive_helpers import REPO, config_for

    idp, server = native_peers(token_ttl=60)
    browser = _http_browser(idp)
    keys = [Fernet.generate_key()]
    store = make_store(redis_fresh, tmp_path / "login", keys)
    with AuthSession(config_for(server, "Pkce", browserOpener=browser), store=store, interactive=True) as session:
        login = session.login()
        key = session.identity().store_key
    assert login.refresh_token
    register_secret(login.refresh_token)
    store.save(key, Token(login.access_token, expires_at=time.time() - 60, refresh_token=login.refresh_token))
    idp.reset()
    env = {**os.environ, "PYTHONPATH": str(REPO), "FLYTEAUTH_REDIS_URL": redis_fresh.url,
           "FLYTEAUTH_REDIS_ENCRYPTION_KEY": keys[0].decode(), "FLYTEAUTH_REDIS_LOCK_TTL": "1s"}

    def start(stop: bool, host: str) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, "-c", ROTATING_SCRIPT.format(stop=stop, target=server.target)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                                env={**env, "FLYTEAUTH_TOKEN_DIR": str(tmp_path / host)})

    a = start(True, "host-a")
    try:
        _wait_stopped(a.pid)
        b = start(False, "host-b")
        out_b, err_b = b.communicate(timeout=60)
        assert b.returncode == 0, err_b
        assert idp.stats()["by_grant"].get("refresh_token") == 1
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(a.pid, signal.SIGCONT)
    out_a, err_a = a.communicate(timeout=60)
    assert a.returncode == 0, err_a
    stats = idp.stats()
    assert stats["by_grant"].get("refresh_token") == 1, stats  # B's; A read it from Redis
    assert stats["refresh_reuse_detected"] == 0 and stats["grants_revoked"] == 0, stats
    assert out_a == out_b


# -- issue 19: a refresh never waits on a Redis that is down, frozen or holds a ghost lock ----------------------
def test_a_ghost_lock_left_by_a_frozen_redis_costs_no_wait(redis_fresh: RedisServer, tmp_path: Path) -> None:
    """A frozen Redis (SIGSTOP) applies, once thawed, the SET NX whose client had given up: a lock nobody
    renews.  0.2.0's waiters sat out its TTL (10 s); now they see it is not renewed and go on at once."""
    keys = [Fernet.generate_key()]
    gone = make_store(redis_fresh, tmp_path / "a", keys)
    gone.load(KEY)  # connected
    redis_fresh.pause()
    try:
        with gone.lock(KEY):  # times out (redisTimeout): the host lock only
            pass
    finally:
        redis_fresh.resume()
    time.sleep(0.1)
    ghost = redis_fresh.client().pttl(gone.lock_key(KEY))
    assert ghost > 5000, "the frozen Redis applied the SET after its client gave up"
    other = make_store(redis_fresh, tmp_path / "b", keys)
    started = time.monotonic()
    with other.lock(KEY):
        waited = time.monotonic() - started
    assert waited < 3.0  # 0.2.0: the ghost's whole TTL (10 s)
    gone.load(KEY)
    with gone.lock(KEY):  # its next lock releases the ghost it left, and takes the lock
        owner = redis_fresh.client().get(gone.lock_key(KEY))
        assert owner is not None and owner.decode().split(":")[1] == str(os.getpid())


def _cc_session(server: Any, store: RedisTokenStore) -> AuthSession:
    from ._idp import CI_BASIC

    config = AuthConfig(endpoint=server.target, insecure=True, auth_type="ClientSecret", client_id=CI_BASIC[0],
                        client_secret=CI_BASIC[1])
    return AuthSession(config, store=store)


@pytest.mark.parametrize("fault", ["pause-all", "sigstop", "down"])
def test_a_refresh_falls_back_within_the_redis_timeout_and_one_idp_round_trip(
        fault: str, redis_fresh: RedisServer, tmp_path: Path, flyte_server: Callable[..., Any]) -> None:
    """Client credentials (an idempotent grant): with Redis paused (`CLIENT PAUSE ALL`), frozen (SIGSTOP) or
    stopped, a refresh costs one redisTimeout and the token request, not a lock TTL."""
    server = flyte_server()
    store = make_store(redis_fresh, tmp_path, redisTimeout="200ms")
    with _cc_session(server, store) as session:
        session.get_token()  # connected, discovery done
        started = time.monotonic()
        session.manager.refresh("expiring")
        round_trip = time.monotonic() - started
        if fault == "pause-all":
            redis_fresh.command("CLIENT", "PAUSE", "1500", "ALL")  # (it pauses CLIENT UNPAUSE too)
            paused_until = time.monotonic() + 1.6
        elif fault == "sigstop":
            redis_fresh.pause()
        else:
            redis_fresh.stop()
        try:
            started = time.monotonic()
            token = session.manager.refresh("expiring")
            took = time.monotonic() - started
        finally:
            if fault == "sigstop":
                redis_fresh.resume()
            elif fault == "pause-all":
                time.sleep(max(0.0, paused_until - time.monotonic()))
        assert token.access_token
        # redisTimeout (0.2 s) per command that reaches a stalled Redis, then the IdP; generous for CI
        assert took < 0.2 * 3 + round_trip + 1.0, (took, round_trip)


def test_a_rotating_refresh_token_is_not_refreshed_while_the_fleet_lock_cannot_be_held(
        redis_fresh: RedisServer, tmp_path: Path, fake_peers: Any) -> None:
    """Redis down: an idempotent grant falls back to the host (above), but a refresh token, which may rotate,
    is only sent under the fleet lock.  The refresh waits up to tokenStoreLockTimeout and then fails with a
    typed error (0.2.0 refreshed under the host's file lock, while other hosts could do the same)."""
    from flyteauth_core.errors import TokenStoreError

    from ._interactive_helpers import HttpBrowser, config_for

    fake, server = fake_peers()
    store = make_store(redis_fresh, tmp_path, tokenStoreLockTimeout="1s")
    with AuthSession(config_for(server, "Pkce", browserOpener=HttpBrowser()), store=store,
                     interactive=True) as session:
        session.login()
        redis_fresh.stop()
        with pytest.raises(TokenStoreError, match="refresh token may rotate"):
            session.manager.refresh("expiring")
        assert fake.stats["grant:refresh_token"] == 0 and fake.reuse_detected == 0
        redis_fresh.start()
        time.sleep(1.1)  # the store leaves a failed Redis alone for a second
        session.manager.refresh("expiring")
        assert fake.stats["grant:refresh_token"] == 1 and fake.reuse_detected == 0


def test_a_cluster_with_no_reachable_node_falls_back(redis_fresh: RedisServer, tmp_path: Path) -> None:
    """redis-py raises RedisClusterException (not a RedisError) when no listed node answers: still Redis being
    down, so the host's fallback store serves, not an error."""
    from ._redis import free_port

    store = make_store(redis_fresh, tmp_path, redisURL=f"redis://127.0.0.1:{free_port()}/0", redisCluster=True)
    store.save(KEY, token())
    assert store.load(KEY).access_token == JWT  # type: ignore[union-attr]
    with store.lock(KEY) as hold:
        assert not hold.held


@pytest.mark.idp
def test_a_rotated_refresh_token_reaches_redis_before_the_fleet_lock_is_released(
        redis_fresh: RedisServer, tmp_path: Path, native_peers: Any) -> None:
    """The real IdP rotates the native client's refresh tokens and revokes the grant when a used one comes
    back.  Host A refreshes under the fleet lock; as it saves the rotated token, Redis stalls its writes
    (`CLIENT PAUSE 700 WRITE`) past redisTimeout.  Before: the save went to A's host file, the lock expired
    unreleased, and host B, reading Redis under the lock, sent the used refresh token: reuse detected, grant
    revoked.  Now A keeps the lock and saves again until Redis has the rotated token; B uses it."""
    from ._interactive_helpers import config_for

    idp, server = native_peers(token_ttl=60)
    browser = _http_browser(idp)
    keys = [Fernet.generate_key()]
    options = {"redisLockTTL": "1s", "redisTimeout": "200ms"}
    store_a = make_store(redis_fresh, tmp_path / "host-a", keys, **options)
    store_b = make_store(redis_fresh, tmp_path / "host-b", keys, **options)
    config = config_for(server, "Pkce", browserOpener=browser)
    with AuthSession(config, store=store_a, interactive=True) as a:
        login = a.login()
        key = a.identity().store_key
        assert login.refresh_token
        register_secret(login.refresh_token)
        store_a.save(key, Token(login.access_token, expires_at=time.time() - 60, refresh_token=login.refresh_token))
        idp.reset()
        save = store_a.save
        stalled: list[float] = []

        def stalled_save(key: str, token: Token) -> None:
            if not stalled:  # the exact fault: Redis stops taking writes as the rotated token is saved
                redis_fresh.command("CLIENT", "PAUSE", "700", "WRITE")
                stalled.append(time.monotonic())
            save(key, token)

        store_a.save = stalled_save  # type: ignore[method-assign]
        refreshed = a.manager.refresh("expiring")
        assert stalled and idp.stats()["by_grant"].get("refresh_token") == 1
    time.sleep(max(0.0, stalled[0] + 0.8 - time.monotonic()))  # the pause is over
    with AuthSession(config, store=store_b, interactive=False) as b:
        try:
            got: Any = b.get_token()
        except FlyteAuthError as exc:  # before: B's refresh with the used token was refused (then a login)
            got = exc
    stats = idp.stats()
    assert stats["refresh_reuse_detected"] == 0 and stats["grants_revoked"] == 0, stats
    assert stats["by_grant"].get("refresh_token") == 1, stats  # A's, read by B from Redis
    assert isinstance(got, Token) and got.access_token == refreshed.access_token, got
    assert store_b.load(key).refresh_token == refreshed.refresh_token  # type: ignore[union-attr]


def test_the_lock_holder_reads_and_saves_through_redis_right_after_a_failed_command(redis_fresh: RedisServer,
                                                                                     tmp_path: Path) -> None:
    """After a command that failed (a renewal timed out in the renewer thread), the store leaves Redis alone
    for a second.  The fleet lock's holder must not: before, its read under the lock returned the host file's
    older refresh token and its save of the rotated one went to the host file, where no other host sees it."""
    store = make_store(redis_fresh, tmp_path / "a")
    other = make_store(redis_fresh, tmp_path / "b", keys=[store.settings.keys[0]])
    store.fallback().save(KEY, token("access-in-the-host-file", refresh="refresh-rotated-long-ago"))
    store.save(KEY, token(refresh="refresh-of-the-fleet"))
    with store.lock(KEY) as hold:
        assert hold.held
        store._down_until = time.monotonic() + 60  # as right after another thread's command timed out
        assert store.load(KEY).refresh_token == "refresh-of-the-fleet"  # type: ignore[union-attr]
        assert hold.exclusive()
        store.save(KEY, token("access-after-the-refresh", refresh="refresh-rotated-now"))
    assert other.load(KEY).refresh_token == "refresh-rotated-now"  # type: ignore[union-attr]
