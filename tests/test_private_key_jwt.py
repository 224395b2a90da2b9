"""private_key_jwt (RFC 7523) client authentication, accepted by the real IdP (client ci-pkjwt)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from flyteauth_core import AuthConfig, AuthSession
from flyteauth_core.config import load_config
from flyteauth_core.errors import ConfigError, InvalidClientError
from flyteauth_core.testing import ECHO, FlyteTestServer
from flyteauth_providers.client_credentials import ClientSecretAuthenticator

from ._idp import CI_PKJWT_ID, CI_PKJWT_KEY_PATH, IdpServer


def key_config(path: Path) -> AuthConfig:
    return AuthConfig(endpoint="a:1", client_id="c", token_endpoint_auth_method="private_key_jwt",
                      client_key_file_path=str(path))


def pkjwt_config(server: FlyteTestServer, key: Path = CI_PKJWT_KEY_PATH, **kwargs: object) -> AuthConfig:
    return AuthConfig(endpoint=server.target, insecure=True, auth_type="ClientSecret", client_id=CI_PKJWT_ID,
                      token_endpoint_auth_method="private_key_jwt", client_key_file_path=str(key), **kwargs)


@pytest.mark.idp
def test_private_key_jwt_is_accepted_by_the_real_idp(idp_fresh: IdpServer,
                                                     flyte_server: Callable[..., FlyteTestServer]) -> None:
    server = flyte_server()
    with AuthSession(pkjwt_config(server), store="memory") as session:
        assert session.channel().unary_unary(ECHO["unary"])(b"x", timeout=20) == b"x"
        first = session.get_token()
        assert session.manager.refresh("expired").access_token != first.access_token  # a fresh assertion works
    assert idp_fresh.token_request_count(CI_PKJWT_ID) == 2


@pytest.mark.idp
def test_private_key_jwt_from_a_config_file(idp_fresh: IdpServer, flyte_server: Callable[..., FlyteTestServer],
                                            tmp_path: Path) -> None:
    server = flyte_server()
    path = tmp_path / "config.yaml"
    path.write_text(f"admin:\n  endpoint: dns:///{server.target}\n  insecure: true\n  clientId: {CI_PKJWT_ID}\n"
                    f"  tokenEndpointAuthMethod: private_key_jwt\n  clientKeyFilePath: {CI_PKJWT_KEY_PATH}\n")
    config = load_config(path, env={})
    assert config.resolved_auth_type == "ClientSecret"  # inferred from the key
    with AuthSession(config, store="memory") as session:
        assert session.get_token().access_token


@pytest.mark.idp
def test_a_wrong_key_is_rejected_by_the_idp(idp_fresh: IdpServer, flyte_server: Callable[..., FlyteTestServer],
                                            tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "other.pem"
    path.write_bytes(other.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
    server = flyte_server()
    with AuthSession(pkjwt_config(server, key=path), store="memory") as session, \
            pytest.raises(InvalidClientError):
        session.get_token()


def test_missing_key_setting_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="clientKeyFilePath"):
        AuthConfig(endpoint="a:1", token_endpoint_auth_method="private_key_jwt")


def test_unreadable_or_bad_key_file_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigError, match="Cannot read clientKeyFilePath") as info:
        ClientSecretAuthenticator(key_config(missing))
    assert str(missing) in str(info.value)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nnot-a-key-canary\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match="holds no RSA, EC or Ed25519 private key") as info:
        ClientSecretAuthenticator(key_config(garbage))
    assert "not-a-key-canary" not in str(info.value)


def test_ec_key_signs_es256(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "ec.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    auth = ClientSecretAuthenticator(key_config(path))
    _, _, body = auth._client_auth().prepare("POST", "https://idp/token", {}, "grant_type=client_credentials")
    import base64
    import json
    from urllib.parse import parse_qs

    assertion = parse_qs(body)["client_assertion"][0]
    header = json.loads(base64.urlsafe_b64decode(assertion.split(".")[0] + "=="))
    claims = json.loads(base64.urlsafe_b64decode(assertion.split(".")[1] + "=="))
    assert header["alg"] == "ES256"
    assert claims["iss"] == claims["sub"] == "c" and claims["aud"] == "https://idp/token"
