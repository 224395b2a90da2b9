"""TLS for the calls to the IdP (a real HTTPS IdP on loopback with a throwaway CA), kept apart from the
Flyte endpoint's trust; and caCertFilePath / insecureSkipVerify on the gRPC channel."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from flyteauth_core import AuthConfig, AuthSession
from flyteauth_core.errors import TokenRequestError, TransientTokenError
from flyteauth_core.testing import ECHO, FlyteTestServer

from ._idp import CI_BASIC, IdpServer, make_test_ca


@pytest.fixture
def tls_idp(idp_factory: Callable[..., IdpServer], tmp_path: Path) -> tuple[IdpServer, Path]:
    ca, cert, key = make_test_ca(tmp_path / "pki")
    return idp_factory(tls=(cert, key), ca_path=ca), ca


@pytest.fixture
def server_for(tls_idp: tuple[IdpServer, Path]) -> Iterator[FlyteTestServer]:
    idp, _ = tls_idp
    with FlyteTestServer(lambda t: None, token_endpoint=idp.token_endpoint, issuer=idp.issuer) as server:
        yield server


def session(server: FlyteTestServer, **kwargs: object) -> AuthSession:
    config = AuthConfig(endpoint=server.target, insecure=True, auth_type="ClientSecret", client_id=CI_BASIC[0],
                        client_secret=CI_BASIC[1], **kwargs)
    return AuthSession(config, store="memory")


@pytest.mark.idp
def test_private_ca_idp_is_refused_by_default(tls_idp: tuple[IdpServer, Path], server_for: FlyteTestServer) -> None:
    idp, _ = tls_idp
    assert idp.token_endpoint.startswith("https://127.0.0.1:")
    started = time.monotonic()
    with session(server_for) as s, pytest.raises(TokenRequestError) as info:
        s.get_token()
    assert not isinstance(info.value, TransientTokenError)  # not retried: retrying cannot fix trust
    assert "TLS verification of the identity provider failed" in str(info.value)
    assert "idpCaCertFilePath" in str(info.value)
    assert time.monotonic() - started < 5
    assert idp.token_request_count() == 0


@pytest.mark.idp
def test_flyte_ca_setting_does_not_apply_to_the_idp(tls_idp: tuple[IdpServer, Path],
                                                    server_for: FlyteTestServer) -> None:
    _, ca = tls_idp
    with session(server_for, ca_cert_file_path=str(ca)) as s, \
            pytest.raises(TokenRequestError, match="TLS verification"):
        s.get_token()


@pytest.mark.idp
def test_accepted_with_the_idp_ca_configured(tls_idp: tuple[IdpServer, Path], server_for: FlyteTestServer) -> None:
    idp, ca = tls_idp
    with session(server_for, idp_ca_cert_file_path=str(ca)) as s:
        assert s.channel().unary_unary(ECHO["unary"])(b"x", timeout=20) == b"x"
    assert idp.token_request_count(CI_BASIC[0]) == 1


@pytest.mark.idp
def test_accepted_with_idp_skip_verify(tls_idp: tuple[IdpServer, Path], server_for: FlyteTestServer) -> None:
    with session(server_for, idp_insecure_skip_verify=True) as s:
        assert s.get_token().access_token


def test_unreadable_idp_ca_is_a_config_error(tmp_path: Path) -> None:
    from flyteauth_core.errors import ConfigError
    from flyteauth_core.http import HttpClientFactory

    factory = HttpClientFactory(AuthConfig(endpoint="a:1", idp_ca_cert_file_path=str(tmp_path / "none.pem")))
    with pytest.raises(ConfigError, match="idpCaCertFilePath"):
        factory.client("https://idp.example.com/token")


# -- the gRPC side: caCertFilePath and insecureSkipVerify -----------------------------------------------
@pytest.fixture
def tls_grpc(tmp_path: Path) -> Iterator[tuple[FlyteTestServer, int, Path, Path]]:
    ca, cert, key = make_test_ca(tmp_path / "grpc-pki")
    server = FlyteTestServer(lambda t: None if t == "tok" else "bad")
    credentials = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    port = server._server.add_secure_port("127.0.0.1:0", credentials)
    server.start()
    try:
        yield server, port, ca, cert
    finally:
        server.stop()


def tls_session(port: int, **kwargs: object) -> AuthSession:
    return AuthSession(AuthConfig(endpoint=f"localhost:{port}", auth_type="Passthrough", token="tok",
                                  authorization_header="flyte-authorization", **kwargs), store="memory")


def test_grpc_with_private_ca_is_refused_by_default(tls_grpc: tuple[FlyteTestServer, int, Path, Path]) -> None:
    _, port, _, _ = tls_grpc
    with tls_session(port) as s, pytest.raises(grpc.RpcError) as info:
        s.channel().unary_unary(ECHO["unary"])(b"x", timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_grpc_accepted_with_ca_cert_file_path(tls_grpc: tuple[FlyteTestServer, int, Path, Path]) -> None:
    _, port, ca, _ = tls_grpc
    with tls_session(port, ca_cert_file_path=str(ca)) as s:
        assert s.channel().unary_unary(ECHO["unary"])(b"x", timeout=10) == b"x"


def test_grpc_insecure_skip_verify(tls_grpc: tuple[FlyteTestServer, int, Path, Path]) -> None:
    _, port, _, _ = tls_grpc
    with tls_session(port, insecure_skip_verify=True) as s:
        assert s.channel().unary_unary(ECHO["unary"])(b"x", timeout=10) == b"x"
