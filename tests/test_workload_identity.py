"""Workload identity against real peers: no secret on disk.

Peers: a Kubernetes-style cluster issuer and a GitHub Actions token service on loopback
(``tests/_platform_issuer.py``, each with its own signing key), the oidc-provider test IdP trusting them
(token exchange grant and a federated client, ``tests/idp/workload.mjs``), and a Flyte test server that
validates the IdP's JWTs.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from flyteauth_core import AuthConfig, AuthSession, hookimpl, load_config
from flyteauth_core.claims import unverified_claims as jwt_claims
from flyteauth_core.errors import (
    ConfigError,
    InvalidClientError,
    PlatformTokenAudienceError,
    PlatformTokenError,
    PlatformTokenExpiredError,
    TokenExchangeError,
)
from flyteauth_core.http import RetryPolicy
from flyteauth_core.options import env_name
from flyteauth_core.plugins import PluginRegistry
from flyteauth_core.protocols import Describable
from flyteauth_core.testing import ECHO, FlyteTestServer
from flyteauth_providers import platform_sources
from flyteauth_providers.platform_token import PlatformTokenReader, workload_options
from flyteauth_providers.token_exchange import GRANT_TYPE

from ._idp import CI_PKJWT_KEY_PATH, IdpServer, _node_or_skip
from ._interactive_helpers import thread_storm
from ._leakscan import register_secret
from ._platform_issuer import GITHUB_SUBJECT, PlatformIssuer
from .conftest import jwt_validator

pytestmark = pytest.mark.idp

SA_SUBJECT = "system:serviceaccount:flyte:workload"
FEDERATED_AUDIENCE = "api://AzureADTokenExchange"
REPO = Path(__file__).resolve().parent.parent


@attrs.frozen
class Peers:
    cluster: PlatformIssuer
    github: PlatformIssuer
    idp: IdpServer
    flyte: FlyteTestServer

    def exchanges(self) -> int:
        return int(self.idp.stats()["by_grant"].get(GRANT_TYPE, 0))


@contextlib.contextmanager
def workload_peers(token_ttl: int) -> Iterator[Peers]:
    """Both platform issuers, the IdP trusting them (tokens live ``token_ttl`` s) and a Flyte server."""
    _node_or_skip()
    with PlatformIssuer("kubernetes") as cluster, PlatformIssuer("github") as github:
        register_secret(github.request_token, "GitHub Actions request token")
        env = {"IDP_SUBJECT_ISSUERS": f"{cluster.issuer},{github.issuer}", "IDP_FEDERATED_ISSUER": cluster.issuer}
        with IdpServer(token_ttl=token_ttl, env=env) as idp:
            flyte = FlyteTestServer(jwt_validator(idp), token_endpoint=idp.token_endpoint, issuer=idp.issuer).start()
            try:
                yield Peers(cluster, github, idp, flyte)
            finally:
                flyte.stop()


@pytest.fixture(scope="module")
def peers() -> Iterator[Peers]:
    with workload_peers(token_ttl=2) as started:
        yield started


@pytest.fixture
def p(peers: Peers) -> Peers:
    peers.idp.reset()
    return peers


def _token(issuer: PlatformIssuer, aud: str, **kwargs: Any) -> str:
    token = issuer.kubernetes_token(aud, **kwargs)
    register_secret(token, "platform token")
    return token


def _exchange_config(p: Peers, token_file: Path, **options: Any) -> AuthConfig:
    options = {"platformTokenFile": str(token_file), "platformTokenAudience": p.idp.issuer, **options}
    return AuthConfig(endpoint=p.flyte.target, insecure=True, auth_type="TokenExchange",
                      client_id="flyte-exchange", options=options)


def _call(session: AuthSession) -> bytes:
    return session.channel().unary_unary(ECHO["unary"])(b"ping", timeout=10)  # type: ignore[no-any-return]


# -- Kubernetes: token exchange ---------------------------------------------------------------------
def test_exchange_of_a_projected_token_calls_flyte_as_the_service_account(p: Peers, tmp_path: Path) -> None:
    path = p.cluster.write_projected(tmp_path / "tokens", _token(p.cluster, p.idp.issuer))
    with AuthSession(_exchange_config(p, path)) as session:
        assert _call(session) == b"ping"
        claims = jwt_claims(session.get_token().access_token) or {}
        # The access token speaks for the subject, and says who acted.
        assert claims["sub"] == SA_SUBJECT and claims["act"] == {"sub": "flyte-exchange"}
        assert claims["iss"] == p.idp.issuer
        described = session._authenticator.details()
    platform = described["platform_token"]
    assert platform["origin"] == f"file {path}" and platform["sub"] == SA_SUBJECT
    assert platform["iss"] == p.cluster.issuer and platform["aud"] == [p.idp.issuer]
    assert path.read_text() not in json.dumps(described)
    assert p.exchanges() == 1
    line = session._authenticator.describe()  # the Describable one-liner, for flyteauth status/doctor
    assert isinstance(session._authenticator, Describable)
    assert f"file {path}" in line and SA_SUBJECT in line and "flyte-exchange" in line
    assert path.read_text() not in line


def test_pod_with_only_a_token_file_survives_three_expiries_and_a_rotation(p: Peers, tmp_path: Path) -> None:
    """The must-show: a separate process, a config and a projected token file, nothing else."""
    tokens = tmp_path / "var-run-secrets-tokens"
    path = p.cluster.write_projected(tokens, _token(p.cluster, p.idp.issuer, ttl=600))
    first_exp = jwt_claims(path.read_text())["exp"]  # type: ignore[index]
    config = tmp_path / "config.yaml"
    config.write_text(
        f"admin:\n  endpoint: dns:///{p.flyte.target}\n  insecure: true\n  authType: TokenExchange\n"
        f"  clientId: flyte-exchange\n  platformTokenFile: {path}\n  platformTokenAudience: {p.idp.issuer}\n"
    )
    ready = tmp_path / "ready"
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "FLYTEAUTH_CONFIG": str(config), "HOME": str(tmp_path)}
    pod = subprocess.Popen([sys.executable, str(REPO / "tests/scripts/pod_workload.py"), "7", str(ready)],
                           env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and pod.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(2.5)  # mid-run, the kubelet rotates the token (new jti, later exp)
        p.cluster.write_projected(tokens, _token(p.cluster, p.idp.issuer, ttl=900))
        out, err = pod.communicate(timeout=60)
    finally:
        if pod.poll() is None:
            pod.kill()
            pod.wait()
    assert pod.returncode == 0, err[-2000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["failed"] == 0, result["errors"]
    assert result["calls"] > 100
    assert result["tokens"] >= 4  # 2-second exchanged tokens over 7 s: at least 3 expiries
    assert result["token_requests"] >= 4 and p.exchanges() == result["token_requests"]
    # The rotated file was picked up: the last exchange used the new token.
    assert int(result["describe"]["platform_token"]["exp"].split()[0]) > first_exp
    assert "clientsecret" not in config.read_text().lower()
    print(f"pod: {result['calls']} calls, {result['failed']} failed, {result['tokens']} exchanged tokens, "
          f"{result['token_requests']} exchanges")


def test_an_expired_platform_token_names_the_file_and_its_exp(p: Peers, tmp_path: Path) -> None:
    exp = int(time.time()) - 120
    path = p.cluster.write_projected(tmp_path / "t", _token(p.cluster, p.idp.issuer, exp=exp))
    with AuthSession(_exchange_config(p, path)) as session, pytest.raises(PlatformTokenExpiredError) as info:
        session.get_token()
    assert info.value.exp == exp and info.value.origin == f"file {path}"
    assert str(path) in str(info.value) and str(exp) in str(info.value)
    assert time.strftime("%Y-%m-%dT%H:%M", time.gmtime(exp)) in str(info.value)
    assert p.exchanges() == 0  # checked before anything was sent


def test_the_exchanged_token_never_outlives_the_platform_token(p: Peers, tmp_path: Path) -> None:
    while time.time() % 1 > 0.3:  # exp is whole seconds: leave the token most of its last second
        time.sleep(0.05)
    exp = int(time.time()) + 1  # the IdP issues 2-second tokens
    path = p.cluster.write_projected(tmp_path / "t", _token(p.cluster, p.idp.issuer, exp=exp))
    with AuthSession(_exchange_config(p, path)) as session:
        token = session.get_token()
    assert token.expires_at == exp < jwt_claims(token.access_token)["exp"]  # type: ignore[index]


def test_64_threads_on_a_cold_session_make_one_exchange(p: Peers, tmp_path: Path) -> None:
    path = p.cluster.write_projected(tmp_path / "t", _token(p.cluster, p.idp.issuer))
    with AuthSession(_exchange_config(p, path)) as session:
        results = thread_storm(64, lambda i: _call(session))
    assert results == [b"ping"] * 64
    assert p.exchanges() == 1


async def test_256_coroutines_on_a_cold_session_make_one_exchange(p: Peers, tmp_path: Path) -> None:
    import asyncio

    path = p.cluster.write_projected(tmp_path / "t", _token(p.cluster, p.idp.issuer))
    with AuthSession(_exchange_config(p, path)) as session:
        tokens = await asyncio.gather(*(session.get_token_async() for _ in range(256)))
    assert len({t.access_token for t in tokens}) == 1
    assert p.exchanges() == 1


def test_exchange_is_retried_after_a_lost_answer_and_an_overloaded_idp(p: Peers, tmp_path: Path) -> None:
    """Token exchange is idempotent: a dropped connection and a 503 are retried, reading the file once."""
    path = p.cluster.write_projected(tmp_path / "t", _token(p.cluster, p.idp.issuer))
    p.idp.inject_faults([{"reset": True}, {"status": 503, "body": "busy"}])
    with AuthSession(_exchange_config(p, path), retry=RetryPolicy(initial_delay=0.01, max_delay=0.05)) as session:
        assert _call(session) == b"ping"
        assert session.stats.token_requests == 1
    assert p.exchanges() == 3


def test_actor_token_and_secret_client(p: Peers, tmp_path: Path) -> None:
    path = p.cluster.write_projected(tmp_path / "t", _token(p.cluster, p.idp.issuer))
    actor = p.cluster.write_projected(tmp_path / "a", _token(p.cluster, p.idp.issuer, name="deployer"))
    config = attrs.evolve(_exchange_config(p, path, actorTokenFile=str(actor)), client_id="flyte-exchange-secret",
                          client_secret="flyte-exchange-secret-value")
    with AuthSession(config) as session:
        claims = jwt_claims(session.get_token().access_token) or {}
    assert claims["sub"] == SA_SUBJECT
    assert claims["act"] == {"sub": "system:serviceaccount:flyte:deployer", "iss": p.cluster.issuer}
    assert claims["client_id"] == "flyte-exchange-secret"


@pytest.mark.parametrize("auth", ["private_key_jwt", "federated_jwt"])
def test_exchange_client_authenticated_by_key_or_by_the_platform_token(p: Peers, tmp_path: Path, auth: str) -> None:
    # For federated_jwt the one platform token is both the subject token and the client assertion, so
    # it carries both audiences (the IdP's for the exchange, Entra's for the federated credential).
    aud = [p.idp.issuer, FEDERATED_AUDIENCE] if auth == "federated_jwt" else p.idp.issuer
    path = p.cluster.write_projected(tmp_path / "t", _token(p.cluster, aud))  # type: ignore[arg-type]
    client = {"private_key_jwt": "flyte-exchange-pkjwt", "federated_jwt": "flyte-federated"}[auth]
    config = attrs.evolve(_exchange_config(p, path), client_id=client, token_endpoint_auth_method=auth,
                          client_key_file_path=str(CI_PKJWT_KEY_PATH) if auth == "private_key_jwt" else None)
    with AuthSession(config) as session:
        assert _call(session) == b"ping"
        claims = jwt_claims(session.get_token().access_token) or {}
    assert claims["sub"] == SA_SUBJECT and claims["client_id"] == client and claims["act"] == {"sub": client}


@pytest.mark.parametrize(
    ("options", "error", "names"),
    [
        ({"subjectTokenType": "urn:ietf:params:oauth:token-type:saml2"}, "invalid_request", "admin.subjectTokenType"),
        ({"resource": "https://billing.example.com"}, "invalid_target", "admin.resource"),
    ],
)
def test_refused_exchanges_say_what_to_change(p: Peers, tmp_path: Path, options: dict[str, str], error: str,
                                              names: str) -> None:
    path = p.cluster.write_projected(tmp_path / "t", _token(p.cluster, p.idp.issuer))
    with AuthSession(_exchange_config(p, path, **options)) as session, pytest.raises(TokenExchangeError) as info:
        session.get_token()
    assert info.value.error == error and info.value.status == 400
    assert names in str(info.value) and p.idp.token_endpoint in str(info.value)


def test_a_token_for_another_audience_is_refused_by_the_idp(p: Peers, tmp_path: Path) -> None:
    """Without platformTokenAudience the client sends it; the IdP's refusal names the audience."""
    path = p.cluster.write_projected(tmp_path / "t", _token(p.cluster, "https://kubernetes.default.svc"))
    config = _exchange_config(p, path, platformTokenAudience="")
    with AuthSession(config) as session, pytest.raises(TokenExchangeError) as info:
        session.get_token()
    assert info.value.error == "invalid_request"
    assert "kubernetes.default.svc" in str(info.value) and p.idp.issuer in str(info.value)


# -- federated client assertion (RFC 7523) -----------------------------------------------------------
def _federated_config(p: Peers, path: Path) -> AuthConfig:
    """The README's federated-assertion config, pointed at the test peers."""
    config = path.parent.parent / "federated.yaml"
    config.write_text(
        f"admin:\n  endpoint: dns:///{p.flyte.target}\n  insecure: true\n  authType: ClientSecret\n"
        f"  clientId: flyte-federated\n  tokenEndpointAuthMethod: federated_jwt\n  tokenUrl: {p.idp.token_endpoint}\n"
        f"  scopes: [all]\n  platformTokenFile: {path}\n  platformTokenAudience: {FEDERATED_AUDIENCE}\n"
    )
    return load_config(config, env={})


def test_federated_assertion_gets_a_token_from_the_idp(p: Peers, tmp_path: Path) -> None:
    path = p.cluster.write_projected(tmp_path / "t", _token(p.cluster, FEDERATED_AUDIENCE))
    with AuthSession(_federated_config(p, path)) as session:
        assert _call(session) == b"ping"
        first = session.get_token()
        assert (jwt_claims(first.access_token) or {})["client_id"] == "flyte-federated"
        assert session._authenticator.details()["platform_token"]["sub"] == SA_SUBJECT
    # The same platform token is reused across refreshes (no single-use jti, as with Entra ID).
    with AuthSession(_federated_config(p, path)) as session:
        assert session.get_token().access_token != first.access_token
    assert p.idp.token_request_count("flyte-federated") == 2


def test_federated_wrong_audience_names_both_audiences(p: Peers, tmp_path: Path) -> None:
    path = p.cluster.write_projected(tmp_path / "t", _token(p.cluster, "https://kubernetes.default.svc"))
    with AuthSession(_federated_config(p, path)) as session, pytest.raises(PlatformTokenAudienceError) as info:
        session.get_token()
    assert info.value.expected == FEDERATED_AUDIENCE and info.value.found == ("https://kubernetes.default.svc",)
    assert FEDERATED_AUDIENCE in str(info.value) and "https://kubernetes.default.svc" in str(info.value)
    assert p.idp.token_request_count("flyte-federated") == 0


def test_federated_assertion_for_another_service_account_is_refused(p: Peers, tmp_path: Path) -> None:
    path = p.cluster.write_projected(tmp_path / "t", _token(p.cluster, FEDERATED_AUDIENCE, name="intruder"))
    with AuthSession(_federated_config(p, path)) as session, pytest.raises(InvalidClientError) as info:
        session.get_token()
    assert "system:serviceaccount:flyte:intruder" in str(info.value)
    assert "federated credential of client 'flyte-federated'" in str(info.value)  # not "check the secret"


# -- GitHub Actions ----------------------------------------------------------------------------------
@pytest.fixture
def in_github_actions(p: Peers, monkeypatch: pytest.MonkeyPatch) -> PlatformIssuer:
    monkeypatch.setenv(platform_sources.GITHUB_URL_ENV, p.github.request_url)
    monkeypatch.setenv(platform_sources.GITHUB_TOKEN_ENV, p.github.request_token)
    return p.github


@pytest.mark.parametrize("source", ["github-actions", "auto"])
def test_github_actions_token_end_to_end(p: Peers, in_github_actions: PlatformIssuer, source: str,
                                         tmp_path: Path) -> None:
    before = in_github_actions.stats["id_token_requests"]
    ci_yaml = tmp_path / "ci.yaml"  # the README's GitHub Actions config, pointed at the test peers
    ci_yaml.write_text(f"admin:\n  endpoint: dns:///{p.flyte.target}\n  insecure: true\n  authType: flyteauth\n"
                       f"flyteauth:\n  authType: TokenExchange\n  clientId: flyte-exchange\n"
                       f"  platformTokenSource: {source}\n  platformTokenAudience: {p.idp.issuer}\n")
    config = load_config(ci_yaml)
    with AuthSession(config) as session:
        assert _call(session) == b"ping"
        claims = jwt_claims(session.get_token().access_token) or {}
        described = session._authenticator.details()["platform_token"]
    assert claims["sub"] == GITHUB_SUBJECT
    assert in_github_actions.stats["id_token_requests"] == before + 1
    assert described["sub"] == GITHUB_SUBJECT and described["aud"] == [p.idp.issuer]
    assert "GitHub Actions" in described["origin"] and in_github_actions.request_token not in json.dumps(described)


def test_github_actions_wrong_request_token(p: Peers, in_github_actions: PlatformIssuer,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(platform_sources.GITHUB_TOKEN_ENV, "not-the-runner-token")
    config = AuthConfig(endpoint=p.flyte.target, insecure=True, auth_type="TokenExchange", client_id="flyte-exchange",
                        options={"platformTokenSource": "github-actions"})
    with AuthSession(config) as session, pytest.raises(PlatformTokenError) as info:
        session.get_token()
    assert "HTTP 401" in str(info.value) and "id-token" in str(info.value)
    assert p.exchanges() == 0


# -- sources without peers ---------------------------------------------------------------------------
def _config(**options: Any) -> AuthConfig:
    return AuthConfig(endpoint="dns:///flyte.example.com", auth_type="TokenExchange", options=options)


def test_auto_lists_what_it_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (platform_sources.GITHUB_URL_ENV, platform_sources.GITHUB_TOKEN_ENV):
        monkeypatch.delenv(var, raising=False)
    if os.path.exists(platform_sources.KUBERNETES_TOKEN_PATH):
        pytest.skip("running in a Kubernetes pod")
    reader = PlatformTokenReader(_config())
    with pytest.raises(PlatformTokenError) as info:
        reader.read(None)  # type: ignore[arg-type]
    for checked in (platform_sources.GITHUB_URL_ENV, platform_sources.GITHUB_TOKEN_ENV,
                    platform_sources.KUBERNETES_TOKEN_PATH):
        assert checked in str(info.value)


def test_auto_finds_the_kubernetes_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (platform_sources.GITHUB_URL_ENV, platform_sources.GITHUB_TOKEN_ENV):
        monkeypatch.delenv(var, raising=False)
    path = tmp_path / "token"
    path.write_text("a.b.c")
    monkeypatch.setattr(platform_sources, "KUBERNETES_TOKEN_PATH", str(path))  # the standard path, relocated
    reader = PlatformTokenReader(_config())
    assert reader.read(None).origin == f"auto: file {path}"  # type: ignore[arg-type]


def test_file_source_rereads_only_when_the_file_changes(tmp_path: Path) -> None:
    issuer = PlatformIssuer()  # not started: only mints
    directory = tmp_path / "tokens"
    path = issuer.write_projected(directory, first := _token(issuer, "x"))
    reader = PlatformTokenReader(_config(platformTokenFile=str(path)))
    assert reader.read(None).value == first  # type: ignore[arg-type]
    stamp = reader.source._stamp  # type: ignore[attr-defined]
    assert reader.read(None).value == first and reader.source._stamp == stamp  # type: ignore[arg-type,attr-defined]
    issuer.write_projected(directory, second := _token(issuer, "x"))
    assert reader.read(None).value == second  # type: ignore[arg-type]
    (directory / "..data").unlink()
    with pytest.raises(PlatformTokenError, match="Cannot read the platform token file"):
        reader.read(None)  # type: ignore[arg-type]


def test_env_and_command_sources(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    issuer = PlatformIssuer()
    token = _token(issuer, "aud-1")
    monkeypatch.setenv("MY_PLATFORM_TOKEN", token)
    assert PlatformTokenReader(_config(platformTokenEnvVar="MY_PLATFORM_TOKEN")).read(None).value == token  # type: ignore[arg-type]
    script = tmp_path / "print_token.py"
    script.write_text(f"print({token!r})\n")
    reader = PlatformTokenReader(_config(platformTokenCommand=[sys.executable, str(script)],
                                         platformTokenAudience="aud-1"))
    assert reader.source_name == "command" and reader.read(None).value == token  # type: ignore[arg-type]
    monkeypatch.delenv("MY_PLATFORM_TOKEN")
    with pytest.raises(PlatformTokenError, match=r"\$MY_PLATFORM_TOKEN"):
        PlatformTokenReader(_config(platformTokenSource="env", platformTokenEnvVar="MY_PLATFORM_TOKEN")).read(None)  # type: ignore[arg-type]


def test_options_come_from_the_section_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    config_file = tmp_path / "config.yaml"
    config_file.write_text("admin:\n  endpoint: dns:///x:443\n  authType: flyteauth\n  platformTokenAudience: sts\n"
                           "flyteauth:\n  authType: TokenExchange\n"
                           "  platformTokenFile: /var/run/secrets/tokens/flyte\n")
    monkeypatch.setenv(env_name("platformTokenAudience"), "from-env")
    options = workload_options(load_config(config_file))
    assert env_name("platformTokenAudience") == "FLYTEAUTH_PLATFORM_TOKEN_AUDIENCE"
    assert options.file == "/var/run/secrets/tokens/flyte" and options.audience == "from-env"
    assert options.subject_token_type == "urn:ietf:params:oauth:token-type:jwt"
    with pytest.raises(ConfigError, match="Unknown platformTokenSource 'kubelet'"):
        PlatformTokenReader(_config(platformTokenSource="kubelet"))
    with pytest.raises(ConfigError, match="platformTokenFile"):
        PlatformTokenReader(_config(platformTokenSource="file"))


@pytest.mark.parametrize("exp", [10**30, 1e300, -(10**20)])
def test_garbled_exp_claims_are_reported_not_crashed_on(tmp_path: Path, exp: float) -> None:
    issuer = PlatformIssuer()
    path = tmp_path / "token"
    path.write_text(issuer.mint(sub="x", aud="a", exp=exp))
    reader = PlatformTokenReader(_config(platformTokenFile=str(path)))
    if exp < 0:
        with pytest.raises(PlatformTokenExpiredError, match="out of range"):
            reader.read(None)  # type: ignore[arg-type]
    else:
        assert reader.read(None).exp == float(exp)  # type: ignore[arg-type]
    assert "exp" in reader.describe()


def test_a_third_party_source_registers_through_the_hook() -> None:
    class Vault:
        local = True

        def __init__(self, config: AuthConfig) -> None:
            self.config = config

        def read(self, request: Any) -> str:
            return "opaque-platform-token"

        def describe(self) -> str:
            return "vault kv/flyte"

    class Plugin:
        @staticmethod
        @hookimpl
        def flyteauth_register_platform_token_sources(register: Any) -> None:
            register("vault", Vault, aliases=("hashicorp-vault",))

    registry = PluginRegistry(entry_points=[])
    registry.register_module(Plugin, "acme-vault")
    reader = PlatformTokenReader(_config(platformTokenSource="hashicorp-vault"), registry=registry)
    assert reader.read(None).origin == "vault kv/flyte"  # type: ignore[arg-type]
    assert reader.details() == {"source": "hashicorp-vault", "origin": "vault kv/flyte"}
