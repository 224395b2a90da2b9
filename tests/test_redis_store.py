"""The redis token store against a real redis-server: encryption at rest, rotation, the fleet lock,
outages (stopped and hung Redis), configuration errors, and the shared discovery cache."""

from __future__ import annotations

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
from flyteauth_core.errors import ConfigError
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
    from flyteauth_core.session import store_key

    from ._interactive_helpers import HttpBrowser, session_for
    from .test_refresh_tokens import start_processes

    fake, server = fake_peers()
    with session_for(server, tmp_path, browserOpener=HttpBrowser()) as session:
        login = session.login()
        key = store_key(session.config, session.auth_type)
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
