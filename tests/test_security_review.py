"""The 0.3.0 review of docs/security.md, done as an attacker and an unlucky operator would: each test here
broke a guarantee through the public API or the CLI, with real peers, before its fix.

* A password with ``/``, ``?`` or ``#`` in ``redisURL`` or ``httpProxyURL`` (generated passwords have them)
  was echoed by ``flyteauth config`` and by the typed error (and its WARNING) that names a malformed URL.
  The refusal of an untrusted per-directory file showed a ``tokenUrl``'s user-info.
* A person's login in a shared Redis was keyed on the OS user's *name*, which every container and every
  JupyterHub pod shares (``root``, ``jovyan``): another host's user with the same name and config was
  handed it.
* ``flyteauth token`` kept its cache under a token directory another user created (and could write),
  which the file store refuses for tokens.
* With ``proxyAuthForIdP``, the proxy's token went to GitHub's OIDC token service too.
"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from flyteauth_core import AuthConfig, AuthSession, Token, load_config
from flyteauth_core.errors import InteractionRequired
from flyteauth_providers.redis_store import RedisSettings, RedisTokenStore

from ._leakscan import register_secret
from ._redis import RedisServer

REPO = Path(__file__).resolve().parent.parent
CLONE_NEWUTS = 0x04000000


# -- secrets in the messages of a malformed URL ---------------------------------------------------------
def test_a_url_password_with_a_slash_is_never_shown(tmp_path: Path) -> None:
    """``redis://:<password>@host`` with an unencoded ``/`` (or ``#``) in the password is malformed; the
    error says so and names the key, and neither it, ``flyteauth config`` nor the WARNING shows the password."""
    redis_password, proxy_password = "pa/ssw0rd-redis-8c1e", "pr/oxy-pass-d41f"
    register_secret(redis_password)
    register_secret(proxy_password)
    config = tmp_path / "config.yaml"
    for url in (f"redis://:{redis_password}@127.0.0.1:6379/0", "redis://:pa#ss-hash-word-5e@127.0.0.1/0"):
        register_secret(url.split("@")[0].split(":")[-1])
        config.write_text("admin:\n  endpoint: dns:///127.0.0.1:9\n  insecure: true\n  authType: ClientSecret\n"
                          "  clientId: app\n  clientSecretEnvVar: APP_SECRET\n  tokenStore: redis\n"
                          f"  redisURL: \"{url}\"\n  httpProxyURL: \"http://u:{proxy_password}@127.0.0.1:3128\"\n")
        loaded = load_config(config)
        problem = next(p for p in loaded.problems if "redisURL" in p)
        assert "percent-encode" in problem.lower()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLYTE", "UCTL_"))}
        env.update(HOME=str(tmp_path), PYTHONPATH=str(REPO))
        shown = subprocess.run([sys.executable, "-m", "flyteauth_core.cli", "config", "--config", str(config)],
                               env=env, capture_output=True, text=True, timeout=60, check=False)
        output = shown.stdout + shown.stderr
        assert "admin.redisURL" in output and "admin.httpProxyURL" in output
        for secret in ("pa/ssw0rd", "pr/oxy", "ss-hash-word"):
            assert secret not in output  # 0.3.0 before the review: both passwords were printed
    # The refusal of an untrusted per-directory file names the token endpoint's host, not its user-info.
    repo = tmp_path / "clone"
    (repo / ".flyte").mkdir(parents=True)
    (repo / ".git").mkdir()
    (repo / ".flyte" / "config.yaml").write_text(
        "admin:\n  endpoint: dns:///127.0.0.1:9\n  insecure: true\n  authType: ClientSecret\n  clientId: app\n"
        f"  clientSecretEnvVar: APP_SECRET\n  tokenUrl: \"https://app:{redis_password}@idp.example.com/token\"\n")
    refused = subprocess.run([sys.executable, "-m", "flyteauth_core.cli", "token"], env=env, capture_output=True,
                             text=True, timeout=60, cwd=repo, check=False)
    assert refused.returncode == 2 and "idp.example.com" in refused.stderr, refused.stderr
    assert "pa/ssw0rd" not in refused.stderr  # before the review: "app:pa/ssw0rd...@idp.example.com"
    # A store built in code (no config check) still never shows it (`flyteauth status`, its WARNINGs).
    store = RedisTokenStore(settings=RedisSettings(url=f"redis://:{redis_password}@127.0.0.1:9/0",
                                                   allow_plaintext=True))
    assert store.describe().startswith("redis (redis://127.0.0.1:9/0,")


# -- a person's login and hosts that share an OS user name ----------------------------------------------
@pytest.mark.skipif(not hasattr(os, "fork") or os.getuid() != 0 or not sys.platform.startswith("linux"),
                    reason="needs root on Linux for a UTS namespace (another host name)")
def test_a_persons_login_in_redis_never_reaches_the_same_user_name_on_another_host(
        redis_fresh: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Alice's device login rests in a shared Redis, made on her pod (user ``root``, as in most
    containers).  Bob's pod (another host name, the same user name and config) must log in himself."""
    key = Fernet.generate_key().decode()
    register_secret(key)
    monkeypatch.setenv("FLYTEAUTH_REDIS_URL", redis_fresh.url)
    monkeypatch.setenv("FLYTEAUTH_REDIS_ENCRYPTION_KEY", key)
    monkeypatch.setenv("FLYTEAUTH_REDIS_FALLBACK", "memory")
    config = AuthConfig(endpoint="dns:///127.0.0.1:9", insecure=True, auth_type="DeviceFlow", client_id="flytectl",
                        token_url="http://127.0.0.1:9/token")
    login = Token(access_token="alice-pod-login-access-3f9", expires_at=time.time() + 600,
                  refresh_token="alice-pod-login-refresh-a07")
    register_secret(login.access_token)
    register_secret(login.refresh_token or "")
    with AuthSession(config, store="redis", interactive=False) as alice:
        alice.store.save(alice.identity().store_key, login)  # as `flyteauth login` leaves it
        assert alice.get_token().access_token == login.access_token
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child reports through the pipe)
        try:
            os.close(read)
            if ctypes.CDLL(None, use_errno=True).unshare(CLONE_NEWUTS) != 0:
                raise OSError(ctypes.get_errno(), "unshare")
            socket.sethostname(f"{socket.gethostname()}-bob")
            try:
                with AuthSession(config, store="redis", interactive=False) as bob:
                    answer = bob.get_token().access_token
            except Exception as exc:
                answer = type(exc).__name__
            os.write(write, answer.encode())
        except BaseException as exc:
            os.write(write, f"child failed: {exc!r}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        answer = pipe.read().decode()
    os.waitpid(pid, 0)
    assert answer == InteractionRequired.__name__  # before the review: bob was handed alice's login


# -- the helper's cache under a token directory another user controls ----------------------------------
@pytest.mark.skipif(not hasattr(os, "chown") or os.getuid() != 0, reason="needs root to give a directory away")
def test_the_helper_keeps_no_cache_in_a_token_directory_another_user_controls(tmp_path: Path) -> None:
    """``FLYTEAUTH_TOKEN_DIR=/tmp/...`` that another user created first (and can write): the file store
    refuses it for tokens, and so must the helper for its cache (``<dir>/helper``), where that user
    could swap the directory between the check and the read and plant the token printed.  The helper
    still works: it prints a fresh token each time and says why it does not cache."""
    import pwd

    from flyteauth_core.testing import DemoTokenEndpoint

    secret = "helper-review-secret-9a2c"
    register_secret(secret)
    idp = DemoTokenEndpoint("app", secret, ttl=300).start()
    try:
        shared = tmp_path / "shared-tmp" / "flyteauth-tokens"
        shared.mkdir(parents=True)
        nobody = pwd.getpwnam("nobody")
        os.chown(shared, nobody.pw_uid, nobody.pw_gid)
        shared.chmod(0o777)
        (tmp_path / "secret").write_text(secret)
        (tmp_path / "secret").chmod(0o600)
        config = tmp_path / "config.yaml"
        config.write_text("admin:\n  endpoint: dns:///127.0.0.1:9\n  insecure: true\n  authType: ClientSecret\n"
                          f"  clientId: app\n  clientSecretLocation: {tmp_path / 'secret'}\n  tokenUrl: {idp.url}\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FLYTE", "UCTL_"))}
        env.update(FLYTEAUTH_TOKEN_DIR=str(shared), HOME=str(tmp_path), PYTHONPATH=str(REPO),
                   FLYTEAUTH_INTERACTIVE="0")
        runs = [subprocess.run([sys.executable, "-m", "flyteauth_core.cli", "token", "--config", str(config)],
                               env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False)
                for _ in range(2)]
        for run in runs:
            register_secret(run.stdout.strip())
            assert run.returncode == 0, run.stderr
            assert str(shared) in run.stderr and "not caching" in run.stderr
        assert list(shared.iterdir()) == []  # before the review: helper/ with the token in it
        assert idp.requests == 2
    finally:
        idp.stop()


# -- proxyAuthForIdP: the proxy's token is for the IdP, not for the platform token's issuer ------------
def test_proxy_auth_for_the_idp_is_not_sent_to_githubs_token_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """``proxyAuthForIdP: true`` (the IdP sits behind the same authenticating proxy as Flyte) adds
    ``proxy-authorization`` to the IdP's requests.  GitHub's OIDC token service is not the IdP: it gets
    only its own bearer, never the proxy's token (a credential for the proxy in front of Flyte)."""
    from flyteauth_core.testing import LoopbackHTTPServer, send_json

    from ._platform_issuer import PlatformIssuer

    proxy_token = "proxy-token-for-the-idp-6b0e"
    register_secret(proxy_token)
    seen: dict[str, list[dict[str, str]]] = {"github": [], "idp": []}

    class GitHub(PlatformIssuer):
        def _get(self, handler: Any) -> None:
            seen["github"].append({k.lower(): v for k, v in handler.headers.items()})
            super()._get(handler)

    def idp(handler: Any) -> None:
        seen["idp"].append({k.lower(): v for k, v in handler.headers.items()})
        handler.rfile.read(int(handler.headers.get("content-length") or 0))
        send_json(handler, 200, {"access_token": "exchanged-access-token-41d7", "token_type": "Bearer",
                                 "expires_in": 300,
                                 "issued_token_type": "urn:ietf:params:oauth:token-type:access_token"})

    register_secret("exchanged-access-token-41d7")
    token_service = LoopbackHTTPServer(idp, methods=("POST",)).start()
    with GitHub("github") as github:
        register_secret(github.request_token)
        monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_URL", github.request_url)
        monkeypatch.setenv("ACTIONS_ID_TOKEN_REQUEST_TOKEN", github.request_token)
        config = AuthConfig(endpoint="dns:///127.0.0.1:9", insecure=True, auth_type="TokenExchange",
                            client_id="ci", token_url=f"{token_service.url}/token", proxy_auth_for_idp=True,
                            proxy_command=(sys.executable, "-c", f"print({proxy_token!r})"),
                            options={"platformTokenSource": "github-actions", "platformTokenAudience": "flyte"})
        try:
            with AuthSession(config, store="memory", interactive=False) as session:
                session.get_token()
        finally:
            token_service.stop()
    assert seen["idp"] and all(h.get("proxy-authorization") == f"Bearer {proxy_token}" for h in seen["idp"])
    assert seen["github"] and all("proxy-authorization" not in h for h in seen["github"])  # before: it was there


@pytest.mark.idp
def test_a_discovery_answer_fetched_in_plaintext_never_serves_a_tls_config(tmp_path: Path, flyte_server: Any) -> None:
    """Two configs for one endpoint and client that differ only in ``insecure`` have one identity.  The
    answer the plaintext one cached (which anyone on the path could have forged, naming their token
    endpoint) must not be what the TLS one uses: it discovers for itself (here it cannot, so it fails)."""
    import attrs

    from flyteauth_core.errors import DiscoveryError

    from ._idp import CI_BASIC

    server = flyte_server()
    plain = AuthConfig(endpoint=server.target, insecure=True, auth_type="ClientSecret", client_id=CI_BASIC[0],
                       client_secret=CI_BASIC[1], store="file", options={"tokenStorePath": str(tmp_path / "t")})
    with AuthSession(plain) as session:
        assert session.server_info().token_endpoint
    with AuthSession(attrs.evolve(plain, insecure=False)) as session, pytest.raises(DiscoveryError):
        session.server_info()
