"""A credential's identity keys every shared cache (issue 16 items 1-3), against real peers.

Peers: a Kubernetes-style cluster issuer and a GitHub Actions token service (``tests/_platform_issuer.py``),
the oidc-provider test IdP trusting them for token exchange, a Flyte test server, a real ``redis-server``,
real ``flyteauth token`` processes sharing a HOME (a self-hosted runner), and an attacker's HTTP listener
that records what reaches it.  Each numbered test fails on 0.2.0.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pytest
from cryptography.fernet import Fernet

from flyteauth_core import AuthConfig, AuthSession, Token
from flyteauth_core.claims import unverified_claims
from flyteauth_core.discovery_cache import to_dict
from flyteauth_core.errors import InteractionRequired
from flyteauth_core.testing import FlyteTestServer, LoopbackHTTPServer, send_json
from flyteauth_providers import platform_sources
from flyteauth_providers.file_store import FileTokenStore
from flyteauth_providers.redis_store import RedisTokenStore

from ._idp import CI_BASIC, IdpServer
from ._leakscan import register_secret
from ._redis import RedisServer
from .test_workload_identity import Peers, workload_peers

if TYPE_CHECKING:
    from flyteauth_core.identity import CredentialIdentity

pytestmark = pytest.mark.idp

REPO = Path(__file__).resolve().parent.parent


def token_of(p: Peers, name: str) -> str:
    """A projected token of service account ``flyte:<name>`` (a new jti and exp each time)."""
    token = p.cluster.kubernetes_token(p.idp.issuer, name=name)
    register_secret(token, "platform token")
    return token


@pytest.fixture(scope="module")
def peers() -> Iterator[Peers]:
    with workload_peers(token_ttl=600) as started:  # long-lived: the helper's cache stays warm
        yield started


@pytest.fixture
def p(peers: Peers) -> Peers:
    peers.idp.reset()
    return peers


def key_of(session: AuthSession) -> str:
    """The session's store key (0.2.0 had no identity: its ``store_key(config, auth_type)``, so that this file
    runs against 0.2.0 and fails there at the behaviour, not at an import)."""
    if hasattr(session, "identity"):
        return str(session.identity().store_key)
    from flyteauth_core.session import store_key

    return store_key(session.config, session.auth_type)


def sub_of(access_token: str) -> str:
    return str(unverified_claims(access_token).get("sub"))


# -- item 1: a shared store hands one identity's token to another -------------------------------------
def test_pods_of_two_service_accounts_sharing_redis_each_get_their_own_token(
        p: Peers, redis_fresh: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same config, ``tokenStore: redis``: pod B (another service account) is not served pod A's token; a
    pod of A's account whose token the kubelet re-projected (new jti, exp) shares A's token (0 exchanges)."""
    key = Fernet.generate_key().decode()
    register_secret(key)
    monkeypatch.setenv("FLYTEAUTH_REDIS_URL", redis_fresh.url)
    monkeypatch.setenv("FLYTEAUTH_REDIS_ENCRYPTION_KEY", key)
    monkeypatch.setenv("FLYTEAUTH_TOKEN_DIR", str(tmp_path / "host-tokens"))
    projected = tmp_path / "var-run-secrets-tokens"  # the same path in every pod, as the pod spec says
    path = p.cluster.write_projected(projected, token_of(p, "pod-a"))
    config = AuthConfig(endpoint=p.flyte.target, insecure=True, auth_type="TokenExchange", client_id="flyte-exchange",
                        options={"platformTokenFile": str(path), "platformTokenAudience": p.idp.issuer})

    def pod() -> tuple[Token, CredentialIdentity | None]:
        with AuthSession(config, store="redis") as session:
            return session.get_token(), getattr(session, "identity", lambda: None)()

    token_a, identity_a = pod()
    assert sub_of(token_a.access_token) == "system:serviceaccount:flyte:pod-a" and p.exchanges() == 1
    p.cluster.write_projected(projected, token_of(p, "pod-b"))
    token_b, identity_b = pod()
    assert sub_of(token_b.access_token) == "system:serviceaccount:flyte:pod-b"  # 0.2.0: pod-a's token
    assert p.exchanges() == 2 and identity_b != identity_a
    # The kubelet rotates pod A's token: same iss/sub/aud, so the same identity, and the fleet still shares.
    p.cluster.write_projected(projected, token_of(p, "pod-a"))
    token_a2, identity_a2 = pod()
    assert identity_a2 == identity_a and token_a2.access_token == token_a.access_token
    assert p.exchanges() == 2  # one token per refresh interval for the whole identity
    assert identity_a is not None and dict(identity_a.parts)["platform"] == (
        f"file:iss={p.cluster.issuer};sub=system:serviceaccount:flyte:pod-a;aud={p.idp.issuer}")
    assert path.read_text() not in repr(identity_a2) + json.dumps(identity_a2.describe())


def test_a_federated_client_in_redis_is_not_served_to_a_pod_of_another_service_account(
        p: Peers, redis_fresh: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``ClientSecret`` with ``federated_jwt``: the platform token is the client's credential.  The IdP trusts
    only ``flyte:workload``; a pod of ``flyte:intruder`` with the same config is refused, not handed the
    workload's token from Redis."""
    from flyteauth_core.errors import InvalidClientError

    audience = "api://AzureADTokenExchange"
    monkeypatch.setenv("FLYTEAUTH_REDIS_URL", redis_fresh.url)
    monkeypatch.setenv("FLYTEAUTH_REDIS_ENCRYPTION_KEY", Fernet.generate_key().decode())
    monkeypatch.setenv("FLYTEAUTH_TOKEN_DIR", str(tmp_path / "host-tokens"))
    projected = tmp_path / "tokens"

    def token(name: str) -> str:
        value = p.cluster.kubernetes_token(audience, name=name)
        register_secret(value, "platform token")
        return value

    path = p.cluster.write_projected(projected, token("workload"))
    config = AuthConfig(endpoint=p.flyte.target, insecure=True, auth_type="ClientSecret", client_id="flyte-federated",
                        token_endpoint_auth_method="federated_jwt", token_url=p.idp.token_endpoint, scopes=("all",),
                        options={"platformTokenFile": str(path), "platformTokenAudience": audience})
    with AuthSession(config, store="redis") as workload:
        workload.get_token()
    p.cluster.write_projected(projected, token("intruder"))
    with AuthSession(config, store="redis") as intruder, pytest.raises(InvalidClientError):
        intruder.get_token()  # 0.2.0: the workload's token, from Redis
    assert p.idp.token_request_count("flyte-federated") == 2


@pytest.mark.skipif(not hasattr(os, "fork") or os.getuid() != 0, reason="needs root to become another OS user")
def test_a_persons_login_in_a_shared_store_never_reaches_another_os_user(
        p: Peers, redis_fresh: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Alice's device login rests in a shared Redis; ``nobody``, with the same config, must log in himself."""
    import pwd

    key = Fernet.generate_key().decode()
    register_secret(key)
    monkeypatch.setenv("FLYTEAUTH_REDIS_URL", redis_fresh.url)
    monkeypatch.setenv("FLYTEAUTH_REDIS_ENCRYPTION_KEY", key)
    monkeypatch.setenv("FLYTEAUTH_REDIS_FALLBACK", "memory")
    config = AuthConfig(endpoint=p.flyte.target, insecure=True, auth_type="DeviceFlow", client_id="flytectl",
                        token_url=p.idp.token_endpoint)
    login = Token(access_token="alice-login-access-token-5d1", expires_at=time.time() + 600,
                  refresh_token="alice-login-refresh-token-77b")
    register_secret(login.access_token)
    register_secret(login.refresh_token or "")
    with AuthSession(config, store="redis", interactive=False) as alice:
        alice.store.save(key_of(alice), login)  # as `flyteauth login` leaves it
        assert alice.get_token().access_token == login.access_token
    nobody = pwd.getpwnam("nobody")
    read, write = os.pipe()
    pid = os.fork()  # the child keeps the imported modules: another user could not read this venv's files
    if pid == 0:  # pragma: no cover (the child reports through the pipe)
        try:
            os.close(read)
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            try:
                with AuthSession(config, store="redis", interactive=False) as other:
                    answer = other.get_token().access_token
            except Exception as exc:
                answer = type(exc).__name__
            os.write(write, answer.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        answer = pipe.read().decode()
    os.waitpid(pid, 0)
    assert answer == InteractionRequired.__name__  # 0.2.0: nobody was handed alice's login


# -- item 2: the credential helper's cache crosses jobs -----------------------------------------------
@pytest.mark.parametrize("source", ["env", "command", "github"])
def test_helper_on_a_persistent_runner_never_prints_another_jobs_token(p: Peers, tmp_path: Path, source: str) -> None:
    """Jobs A and B on one self-hosted runner: same HOME (and so the same helper cache), same config; B has
    another platform identity.  B gets its own token; A's next job, with a rotated token of the same
    identity, is answered from the cache."""
    home = tmp_path / "runner-home"
    home.mkdir()
    token_file = tmp_path / "job-token"
    lines = {"env": "  platformTokenEnvVar: JOB_PLATFORM_TOKEN\n",
             "command": f"  platformTokenCommand: [cat, {token_file}]\n",
             "github": "  platformTokenSource: github-actions\n"}[source]
    config = home / "config.yaml"
    config.write_text(f"admin:\n  endpoint: dns:///{p.flyte.target}\n  insecure: true\n  authType: TokenExchange\n"
                      f"  clientId: flyte-exchange\n  platformTokenAudience: {p.idp.issuer}\n" + lines)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("FLYTE", "UCTL_", "ACTIONS_"))}
    base.update(HOME=str(home), PYTHONPATH=str(REPO), FLYTEAUTH_INTERACTIVE="0")

    def job(name: str) -> str:
        env = dict(base)
        if source == "github":  # each job gets its own token request (the runner's per-job variables)
            env[platform_sources.GITHUB_URL_ENV] = f"{p.github.request_url}&job={name[0]}"
            env[platform_sources.GITHUB_TOKEN_ENV] = p.github.request_token
        else:
            token = token_of(p, f"job-{name[0]}")
            token_file.write_text(token)
            env["JOB_PLATFORM_TOKEN"] = token
        run = subprocess.run([sys.executable, "-m", "flyteauth_core.cli", "token", "--config", str(config)],
                             env=env, capture_output=True, text=True, timeout=60, cwd=home, check=False)
        assert run.returncode == 0, run.stderr[-2000:]
        register_secret(run.stdout.strip(), "flyteauth token stdout")
        return run.stdout.strip()

    first_a = job("a")
    assert p.exchanges() == 1
    b = job("b")
    assert b != first_a and p.exchanges() == 2  # 0.2.0: job B was printed job A's token, 1 exchange
    if source != "github":
        assert sub_of(b) == "system:serviceaccount:flyte:job-b"
    again_a = job("a2")  # A's identity again, with a freshly rotated platform token: the warm cache
    assert again_a == first_a and p.exchanges() == 2
    helper = home / ".config" / "flyteauth" / "tokens" / "helper"
    assert all(d.stat().st_mode & 0o777 == 0o700 for d in (helper, helper.parent, helper.parent.parent))


def test_helper_makes_every_directory_it_creates_private(tmp_path: Path) -> None:
    """Item 8: the parents of the helper's token directory are created 0700, not 0755.  (No IdP needed: the
    config's provider fails, after the cache directory was prepared.)"""
    tokens = tmp_path / "a" / "b" / "tokens"
    config = tmp_path / "config.yaml"
    config.write_text("admin:\n  endpoint: dns:///127.0.0.1:9\n  insecure: true\n  authType: TokenExchange\n"
                      "  tokenUrl: http://127.0.0.1:9/token\n  platformTokenCommand: [/nonexistent/print-token]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLYTE", "UCTL_"))}
    env.update(HOME=str(tmp_path), FLYTEAUTH_TOKEN_DIR=str(tokens), PYTHONPATH=str(REPO))
    run = subprocess.run([sys.executable, "-m", "flyteauth_core.cli", "token", "--config", str(config)], env=env,
                         capture_output=True, text=True, timeout=60, check=False)
    # Item 8: a platformTokenCommand that does not exist is a configuration problem (2), not "IdP rejected" (4).
    assert run.returncode == 2, run.stderr
    assert "/nonexistent/print-token" in run.stderr and "platformTokenCommand" in run.stderr
    for directory in (tmp_path / "a", tmp_path / "a" / "b", tokens, tokens / "helper"):
        assert directory.stat().st_mode & 0o777 == 0o700, directory


# -- item 3: whoever can write a cache decides where the client secret goes ----------------------------
class Attacker:
    """An HTTP listener that records every request that reaches it (and answers 400)."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, bytes]] = []
        self._lock = threading.Lock()
        self.server = LoopbackHTTPServer(self._handle, methods=("GET", "POST"))
        self.url = self.server.url

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else b""
        with self._lock:
            self.received.append((handler.command, handler.path, body + str(handler.headers).encode()))
        send_json(handler, 400, {"error": "invalid_request"})


@pytest.fixture
def attacker() -> Iterator[Attacker]:
    listener = Attacker()
    listener.server.start()
    try:
        yield listener
    finally:
        listener.server.stop()


def _poisoned(session: AuthSession, attacker: Attacker) -> tuple[list[str], dict[str, Any]]:
    """The record an attacker plants, under every key a version of flyteauth would read (0.2.0's and ours)."""
    with AuthSession(session.config, store="none") as honest:
        info = honest.server_info()
    record = to_dict(attrs.evolve(info, token_endpoint=f"{attacker.url}/token"))
    keys = [f"flyteauth-discovery:{session.config.endpoint}"]
    if hasattr(session, "identity"):
        from flyteauth_core.discovery_cache import channel_marker

        keys.append(session.identity().discovery_key)
        keys.append(session.identity().discovery_key + channel_marker(session.config))  # the key read now
    return keys, record


def _client_secret_config(server: FlyteTestServer, tmp_path: Path, **options: Any) -> AuthConfig:
    secret = tmp_path / "client-secret"
    secret.write_text(CI_BASIC[1])
    return AuthConfig(endpoint=server.target, insecure=True, auth_type="ClientSecret", client_id=CI_BASIC[0],
                      client_secret_location=str(secret), options=options)


def test_a_discovery_record_in_a_world_writable_token_dir_is_not_used(
        idp: IdpServer, flyte_server: Any, attacker: Attacker, tmp_path: Path) -> None:
    server = flyte_server()
    shared = tmp_path / "shared-tokens"
    shared.mkdir()
    shared.chmod(0o777)  # /tmp/flyte-tokens on a multi-user host: anyone may write here
    config = _client_secret_config(server, tmp_path, tokenStorePath=str(shared))
    with AuthSession(config, store="file") as session:
        keys, record = _poisoned(session, attacker)
        store = FileTokenStore(directory=shared)
        for key in keys:  # written by another user, as the attacker would
            store._discovery_path(key).write_text(json.dumps(
                {"version": 1, "key": key, "expires_at": time.time() + 3600, "discovery": record}))
        token = session.get_token()  # 0.2.0: the client secret went to the attacker, and this raised
    assert unverified_claims(token.access_token)["iss"] == idp.issuer
    assert attacker.received == []


def test_a_discovery_file_others_may_write_is_not_used_even_in_a_private_directory(tmp_path: Path) -> None:
    store = FileTokenStore(directory=tmp_path / "tokens")
    store.save_discovery("k", {"token_endpoint": "https://idp.example.com/token"}, 60)
    assert store.load_discovery("k") == {"token_endpoint": "https://idp.example.com/token"}
    assert store._discovery_path("k").stat().st_mode & 0o777 == 0o600
    store._discovery_path("k").chmod(0o666)  # planted through a hard link, or left by a careless copy
    assert store.load_discovery("k") is None


def test_plaintext_redis_shares_no_discovery(idp: IdpServer, flyte_server: Any, attacker: Attacker,
                                             redis_fresh: RedisServer, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    server = flyte_server()
    monkeypatch.setenv("FLYTEAUTH_TOKEN_DIR", str(tmp_path / "host-tokens"))  # the private local fallback
    config = _client_secret_config(server, tmp_path, redisURL=redis_fresh.url, redisAllowPlaintext=True)
    import redis

    from flyteauth_core.discovery_cache import channel_marker

    client = redis.Redis.from_url(redis_fresh.url)
    with AuthSession(config, store="redis") as session:
        keys, record = _poisoned(session, attacker)
        store = RedisTokenStore(config)
        planted = {}
        for key in keys:  # anyone who can reach this Redis can write it
            planted[key] = json.dumps({"version": 1, "key": key, "saved_at": time.time(), "discovery": record})
            client.set(store.data_key(key), planted[key])
        token = session.get_token()
        assert unverified_claims(token.access_token)["iss"] == idp.issuer
        assert attacker.received == []
        ours = session.identity().discovery_key + channel_marker(config)  # the key names the channel too
    # Ours is not shared through the plaintext Redis either (the planted records are untouched); the host's
    # private file store keeps it.
    assert {k: client.get(store.data_key(k)) for k in keys} == {k: v.encode() for k, v in planted.items()}
    cached = FileTokenStore(directory=tmp_path / "host-tokens").load_discovery(ours)
    assert cached["token_endpoint"] == idp.token_endpoint
    client.close()


# -- the contract: third-party providers contribute their part ----------------------------------------
class _TenantAuthenticator:
    """A third-party provider whose tokens are per tenant (a value the core knows nothing about)."""

    def __init__(self, config: AuthConfig) -> None:
        self.tenant = str(config.options.get("tenant", ""))

    def acquire(self, request: Any) -> Token:
        return Token(access_token=f"token-of-{self.tenant}", expires_at=time.time() + 600)

    def identity_parts(self, request: Any) -> dict[str, str]:
        return {"tenant": self.tenant}


def test_a_third_party_provider_contributes_its_identity_parts(tmp_path: Path) -> None:
    from flyteauth_core.protocols import IdentitySource

    def session(tenant: str) -> AuthSession:
        config = AuthConfig(endpoint="dns:///flyte.example.com", auth_type="Tenant", options={"tenant": tenant,
                            "tokenStorePath": str(tmp_path / "tokens")})
        return AuthSession(config, authenticator=_TenantAuthenticator(config), store="file")

    assert isinstance(_TenantAuthenticator(AuthConfig(endpoint="dns:///x")), IdentitySource)
    with session("red") as red:
        assert red.get_token().access_token == "token-of-red"
        assert dict(red.identity().parts) == {"tenant": "red"}
    with session("blue") as blue:  # the same file store, another tenant: not red's token
        assert blue.get_token().access_token == "token-of-blue"
        assert blue.identity().store_key != red.identity().store_key
