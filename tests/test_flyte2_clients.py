"""flyte 2.x route (b): flyte's own ``ClientSet`` and ``flyte.remote`` authenticated by an AuthSession through
``flyteauth_integrations.flyte`` (the real ``flyte`` package), against a Connect server (connectrpc ASGI +
flyteidl2 stubs behind uvicorn) over TLS with a throwaway CA, and the real test IdP.

The config is what a flyte 2.x user has: endpoint, CA file, ClientSecret; no tokenUrl (the session discovers
it over Connect).  Server-side counts are the verdict: calls served, calls rejected.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

pytest.importorskip("flyte")

from flyteauth_core import AuthConfig, AuthSession, ConfigError

from ._connect_server import ConnectTestServer
from ._idp import CI_BASIC, IdpServer, make_test_ca
from .conftest import jwt_validator

pytestmark = pytest.mark.idp


@pytest.fixture
def flyte_global(monkeypatch: pytest.MonkeyPatch) -> None:
    """flyte.init writes a process-global config: give it back afterwards."""
    from flyte import _initialize

    monkeypatch.setattr(_initialize, "_init_config", None)


def session_for(server: ConnectTestServer, ca: Path | None, **overrides: object) -> AuthSession:
    config = AuthConfig(endpoint=f"dns:///{server.target.split('://')[1]}", insecure=ca is None,
                        ca_cert_file_path=str(ca) if ca else None, auth_type="ClientSecret",
                        client_id=CI_BASIC[0], client_secret=CI_BASIC[1], **overrides)  # type: ignore[arg-type]
    return AuthSession(config, interactive=False)


async def test_64_cold_coroutines_on_a_flyte_clientset_make_one_token_request(
        tls_connect_server: tuple[ConnectTestServer, Path], idp_fresh: IdpServer) -> None:
    from flyte.remote._client.controlplane import ClientSet
    from flyteidl2.auth.identity_pb2 import UserInfoRequest

    from flyteauth_integrations import flyte as flyteauth_flyte

    server, ca = tls_connect_server
    with session_for(server, ca) as session:
        client = await flyteauth_flyte.client_set(session)
        assert isinstance(client, ClientSet) and client.endpoint == server.target
        replies = await asyncio.gather(*(client.identity_service.user_info(UserInfoRequest()) for _ in range(64)))
    assert all(r.subject == "flyteauth-test" for r in replies)
    assert idp_fresh.token_request_count(CI_BASIC[0]) == 1
    assert server.stats["calls"] == 64 and server.stats["rejected"] == 0
    assert server.stats["discovery_v2"] >= 1  # no tokenUrl: found over Connect


async def test_flyte_remote_across_two_expiries_has_no_rejected_call(
        tls_connect_server: tuple[ConnectTestServer, Path], idp_fresh: IdpServer, flyte_global: None) -> None:
    import flyte.remote

    from flyteauth_integrations import flyte as flyteauth_flyte

    server, ca = tls_connect_server
    with session_for(server, ca) as session:
        await flyteauth_flyte.init(session, project="flytesnacks", domain="development")
        until = time.monotonic() + 2 * idp_fresh.token_ttl + 0.6  # spans two expiries
        calls = 0
        while time.monotonic() < until:
            users = await asyncio.gather(*(flyte.remote.User.get.aio() for _ in range(4)))  # flyte's public API
            assert all(user.subject() == "flyteauth-test" for user in users)
            calls += 4
            await asyncio.sleep(0.05)
        assert session.stats.token_requests >= 3  # the first token and two replacements, before expiry
    assert server.stats["rejected"] == 0 and server.stats["calls"] == calls


async def test_plaintext_endpoint_still_carries_the_token(idp_fresh: IdpServer) -> None:
    """flyte 2.x itself sends no auth when ``insecure`` is true; built through flyteauth, the call has it."""
    from flyteidl2.auth.identity_pb2 import UserInfoRequest

    from flyteauth_integrations import flyte as flyteauth_flyte

    with ConnectTestServer(jwt_validator(idp_fresh), token_endpoint=idp_fresh.token_endpoint) as server, \
            session_for(server, None) as session:
        client = await flyteauth_flyte.client_set(session, rpc_retries=None)
        assert (await client.identity_service.user_info(UserInfoRequest())).subject == "flyteauth-test"
        assert server.stats["rejected"] == 0 and idp_fresh.token_request_count(CI_BASIC[0]) == 1


async def test_bad_inputs_fail_with_a_config_error(tls_connect_server: tuple[ConnectTestServer, Path],
                                                   tmp_path: Path, flyte_global: None) -> None:
    from flyteauth_integrations import flyte as flyteauth_flyte

    server, ca = tls_connect_server
    with session_for(server, ca, insecure_skip_verify=True) as session, \
            pytest.raises(ConfigError, match="caCertFilePath"):
        await flyteauth_flyte.client_set(session)
    with session_for(server, tmp_path / "missing.pem") as session, pytest.raises(ConfigError, match=r"missing\.pem"):
        await flyteauth_flyte.client_set(session)
    with session_for(server, ca) as session, pytest.raises(ConfigError, match="endpoint"):
        await flyteauth_flyte.init(session, endpoint="dns:///elsewhere", project="p")


async def test_session_config_keeps_flytes_own_interceptors_and_cluster_auth(tmp_path: Path) -> None:
    """flyte's x-request-id and retry interceptors stay around ours, in flyte's order; ``cluster_auth`` is
    what flyte's cluster-aware services rebuild their per-cluster sessions from."""
    from flyte.remote._client.auth._interceptors.default_metadata import DefaultMetadataInterceptor
    from flyte.remote._client.auth._interceptors.retry import RetryUnaryInterceptor

    from flyteauth_core.transports.connect import ConnectAuth
    from flyteauth_integrations import flyte as flyteauth_flyte

    ca, _, _ = make_test_ca(tmp_path / "ca")
    route_a = {"auth_type": "ExternalCommand", "command": ["flyteauth", "token"]}
    config = AuthConfig(endpoint="dns:///flyte.example.com", ca_cert_file_path=str(ca), auth_type="ClientSecret",
                        client_id="ci", client_secret="s")
    with AuthSession(config, interactive=False) as session:
        cfg = await flyteauth_flyte.session_config(session, cluster_auth=route_a)
        assert [type(i) for i in cfg.interceptors[:3]] == [DefaultMetadataInterceptor, ConnectAuth,
                                                            RetryUnaryInterceptor]
        assert cfg.endpoint == "https://flyte.example.com" and not cfg.insecure
        assert cfg.tls_ca_cert == ca.read_bytes() and dict(cfg.auth_kwargs) == route_a
        bare = await flyteauth_flyte.session_config(session, rpc_retries=None)
        assert len(bare.interceptors) == 2 and dict(bare.auth_kwargs) == {}
        assert session.stats.token_requests == 0  # building clients costs no I/O to the IdP
