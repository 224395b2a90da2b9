"""flyteidl2's generated Connect client with ``session.connect_interceptors()`` against a real Connect
server (connectrpc's ASGI app behind uvicorn) and the real test IdP: storms and expiries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from flyteauth_core import AuthConfig, AuthSession

from ._idp import CI_BASIC, IdpServer
from .conftest import jwt_validator

pytestmark = pytest.mark.idp
connectrpc = pytest.importorskip("connectrpc")


@pytest.fixture
def server(idp: IdpServer) -> Iterator[object]:
    from ._connect_server import ConnectTestServer

    with ConnectTestServer(jwt_validator(idp), token_endpoint=idp.token_endpoint) as srv:
        yield srv


def _session(server: object, idp: IdpServer, secret: str = CI_BASIC[1]) -> AuthSession:
    config = AuthConfig(endpoint=server.target, auth_type="ClientSecret",  # type: ignore[attr-defined]
                        client_id=CI_BASIC[0], client_secret=secret, token_url=idp.token_endpoint,
                        authorization_header="authorization")
    return AuthSession(config, interactive=False)


async def test_256_cold_coroutines_make_one_token_request(server: object, idp_fresh: IdpServer) -> None:
    from flyteidl2.auth.identity_connect import IdentityServiceClient
    from flyteidl2.auth.identity_pb2 import UserInfoRequest

    with _session(server, idp_fresh) as session:
        async with IdentityServiceClient(server.target,  # type: ignore[attr-defined]
                                         interceptors=session.connect_interceptors()) as client:
            replies = await asyncio.gather(*(client.user_info(UserInfoRequest()) for _ in range(256)))
        assert all(r.subject == "flyteauth-test" for r in replies)
        assert idp_fresh.token_request_count(CI_BASIC[0]) == 1 and session.stats.token_requests == 1
    assert server.stats["rejected"] == 0  # type: ignore[attr-defined]


async def test_two_token_expiries_cost_no_rejected_call(server: object, idp_fresh: IdpServer) -> None:
    from flyteidl2.auth.identity_connect import IdentityServiceClient
    from flyteidl2.auth.identity_pb2 import UserInfoRequest

    ttl = idp_fresh.token_ttl
    with _session(server, idp_fresh) as session:
        async with IdentityServiceClient(server.target,  # type: ignore[attr-defined]
                                         interceptors=session.connect_interceptors()) as client:
            until = time.monotonic() + 2 * ttl + 0.6  # the run spans two expiries
            calls = 0
            while time.monotonic() < until:
                await asyncio.gather(*(client.user_info(UserInfoRequest()) for _ in range(4)))
                calls += 4
                await asyncio.sleep(0.05)
        assert session.stats.token_requests >= 3  # the first token and two replacements
    assert server.stats["rejected"] == 0 and server.stats["calls"] == calls  # type: ignore[attr-defined]


def test_sync_client_with_connect_interceptors_sync(server: object, idp_fresh: IdpServer) -> None:
    from flyteidl2.auth.identity_connect import IdentityServiceClientSync
    from flyteidl2.auth.identity_pb2 import UserInfoRequest

    with _session(server, idp_fresh) as session, IdentityServiceClientSync(
            server.target, interceptors=session.connect_interceptors_sync()) as client:  # type: ignore[attr-defined]
        assert client.user_info(UserInfoRequest()).subject == "flyteauth-test"
        assert client.user_info(UserInfoRequest()).subject == "flyteauth-test"
    assert session.stats.token_requests == 1


async def test_an_auth_failure_is_both_a_flyteauth_error_and_a_connect_error(
        server: object, idp_fresh: IdpServer) -> None:
    from connectrpc.code import Code
    from connectrpc.errors import ConnectError
    from flyteidl2.auth.identity_connect import IdentityServiceClient, IdentityServiceClientSync
    from flyteidl2.auth.identity_pb2 import UserInfoRequest

    from flyteauth_core.errors import InvalidClientError

    with _session(server, idp_fresh, secret="wrong-secret") as session:
        async with IdentityServiceClient(server.target,  # type: ignore[attr-defined]
                                         interceptors=session.connect_interceptors()) as client:
            with pytest.raises(ConnectError) as error:
                await client.user_info(UserInfoRequest())
        with IdentityServiceClientSync(server.target,  # type: ignore[attr-defined]
                                       interceptors=session.connect_interceptors_sync()) as sync_client, \
                pytest.raises(ConnectError) as sync_error:
            sync_client.user_info(UserInfoRequest())
    for caught in (error.value, sync_error.value):
        assert isinstance(caught, InvalidClientError)
        assert caught.code is Code.UNAUTHENTICATED
        assert "invalid_client" in caught.message or "rejected" in caught.message.lower()
        assert "wrong-secret" not in repr(caught) + str(caught)
    assert server.stats["calls"] == 0  # type: ignore[attr-defined]  # nothing went out without a token
