"""The quirks of the IdPs Flyte users run (docs/idps.md), against the test IdP dressed as each one.

No Entra ID, Keycloak, Okta or Auth0 runs here, so ``tests/idp/profiles.mjs`` (``IDP_PROFILE``) puts each
one's documented behaviour in front of the real oidc-provider: its paths, what it refuses and how it says so
(Entra's AADSTS codes, Keycloak's PKCE-enforced device flow, refresh tokens only for ``offline_access``,
Auth0's opaque tokens).  Each test shows what a user would see: a token that works, or an error that names
the key to change.  Recognition and request shaping are pure functions, tested directly first.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flyteauth_core import AuthConfig, AuthSession
from flyteauth_core.claims import audiences, unverified_claims
from flyteauth_core.errors import ConfigError, InvalidClientError, TokenRequestError
from flyteauth_core.idps import explain_aadsts, recognise
from flyteauth_core.testing import ECHO, FlyteTestServer

from ._idp import CI_BASIC, CI_PKJWT_ID, CI_PKJWT_KEY_PATH, NATIVE_CLIENT_ID, IdpServer, http_device_login
from .conftest import jwt_validator

TENANT = "flyte-tenant"


# -- recognition and shaping (pure) -----------------------------------------------------------------------
@pytest.mark.parametrize(("url", "kind", "version"), [
    ("https://login.microsoftonline.com/abc/oauth2/v2.0/token", "entra", "v2"),
    ("https://login.microsoftonline.com/abc/oauth2/token", "entra", "v1"),
    ("https://login.microsoftonline.us/abc/v2.0", "entra", "v2"),
    ("http://127.0.0.1:9/abc/oauth2/v2.0/token", "entra", "v2"),          # a v2 path on any host
    ("https://sso.example.com/realms/flyte/protocol/openid-connect/token", "keycloak", ""),
    ("https://sso.example.com/auth/realms/flyte", "keycloak", ""),          # Keycloak < 17's /auth prefix
    ("https://acme.okta.com/oauth2/default/v1/token", "okta", ""),
    ("https://login.acme.com/oauth2/aus1abc/v1/token", "okta", ""),         # custom domain, custom server
    ("https://acme.us.auth0.com/oauth/token", "auth0", ""),
    ("https://oauth2.googleapis.com/token", "google", ""),
    ("https://idp.example.com/oauth/token", "generic", ""),                 # GitLab, UAA: not Auth0
    ("https://idp.example.com/o/token/", "generic", ""),
    ("", "generic", ""),
])
def test_the_idp_is_recognised_from_its_url(url: str, kind: str, version: str) -> None:
    profile = recognise(url)
    assert (profile.kind, profile.entra_version) == (kind, version)


def test_a_declared_profile_wins_and_a_wrong_one_names_the_key() -> None:
    assert recognise("https://login.acme.com/oauth/token", "Auth0").kind == "auth0"  # Auth0 custom domain
    with pytest.raises(ConfigError, match="idpProfile 'azure' is not one of entra, keycloak"):
        recognise("https://x", "azure")


def test_okta_org_server_is_told_apart_from_a_custom_one() -> None:
    assert recognise("https://acme.okta.com/oauth2/v1/token").okta_org_server
    assert not recognise("https://acme.okta.com/oauth2/default/v1/token").okta_org_server


def test_entra_v2_gets_no_audience_and_an_audience_becomes_the_default_scope() -> None:
    entra = recognise("https://login.microsoftonline.com/t/oauth2/v2.0/token")
    form = entra.shape_token_form({"grant_type": "client_credentials", "scope": "all", "audience": "api://flyte"},
                                  grant="client_credentials")
    assert form == {"grant_type": "client_credentials", "scope": "api://flyte/.default"}
    kept = entra.shape_token_form({"scope": "api://flyte/.default", "audience": "api://other"},
                                  grant="client_credentials")
    assert kept == {"scope": "api://flyte/.default"}
    v1 = recognise("https://login.microsoftonline.com/t/oauth2/token")
    assert v1.shape_token_form({"scope": "api://flyte/.default"}, grant="client_credentials")["resource"] == "api://flyte"
    generic = recognise("https://idp.example.com/token")
    assert generic.shape_token_form({"audience": "a", "scope": "all"}, grant="client_credentials") == {
        "audience": "a", "scope": "all"}


def test_aadsts_codes_say_what_to_change() -> None:
    text = explain_aadsts("AADSTS7000215: Invalid client secret provided. Trace ID: 1")
    assert text and "secret's Value" in text and "clientSecretLocation" in text
    assert "/.default" in (explain_aadsts("AADSTS1002012: The provided value for scope all") or "")
    unknown = explain_aadsts("AADSTS1234567: something new")
    assert unknown and "error?code=1234567" in unknown
    assert explain_aadsts("invalid_client") is None


# -- the profiles, on the real oidc-provider ----------------------------------------------------------------
@pytest.fixture(scope="module")
def pkjwt_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A self-signed certificate for ci-pkjwt's key, and its x5t#S256 (what Entra has on file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    key = serialization.load_pem_private_key(CI_PKJWT_KEY_PATH.read_bytes(), password=None)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ci-pkjwt")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())  # type: ignore[arg-type]
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))  # type: ignore[arg-type]
    path = tmp_path_factory.mktemp("cert") / "ci-pkjwt.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    der = cert.public_bytes(serialization.Encoding.DER)
    return path, base64.urlsafe_b64encode(hashlib.sha256(der).digest()).rstrip(b"=").decode()


def _start(profile: str, **env: str) -> Iterator[IdpServer]:
    from ._idp import _node_or_skip

    _node_or_skip()
    server = IdpServer(token_ttl=60, device_interval=0, env={"IDP_PROFILE": profile, **env}).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def entra(pkjwt_certificate: tuple[Path, str]) -> Iterator[IdpServer]:
    yield from _start("entra", IDP_PROFILE_X5T_S256=pkjwt_certificate[1])


@pytest.fixture(scope="module")
def keycloak() -> Iterator[IdpServer]:
    yield from _start("keycloak")


@pytest.fixture(scope="module")
def auth0() -> Iterator[IdpServer]:
    yield from _start("auth0")


@pytest.fixture
def flyte_for() -> Iterator[Callable[..., FlyteTestServer]]:
    servers: list[FlyteTestServer] = []

    def make(idp: IdpServer, token_endpoint: str, **kwargs: Any) -> FlyteTestServer:
        server = FlyteTestServer(jwt_validator(idp), token_endpoint=token_endpoint, issuer=idp.issuer, **kwargs).start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def _entra_v2(idp: IdpServer) -> str:
    return f"{idp.issuer}/{TENANT}/oauth2/v2.0/token"


def _aud(token: str) -> tuple[str, ...]:
    return tuple(audiences(unverified_claims(token)))


@pytest.mark.idp
def test_entra_client_credentials_with_an_audience_get_a_token_for_that_api(
        entra: IdpServer, flyte_for: Callable[..., FlyteTestServer]) -> None:
    """The Flyte config most users carry over (scopes from the server, an audience): 0.2.0 sent `audience`,
    and Entra answered AADSTS901002; now the audience becomes the one ``/.default`` scope Entra wants."""
    server = flyte_for(entra, _entra_v2(entra), scopes=("all",))
    config = AuthConfig(endpoint=server.target, insecure=True, auth_type="ClientSecret", client_id=CI_BASIC[0],
                        client_secret=CI_BASIC[1], audience="api://flyte-app")
    with AuthSession(config, store="memory") as session:
        assert session.channel().unary_unary(ECHO["unary"])(b"x", timeout=20) == b"x"
        assert _aud(session.get_token().access_token) == ("api://flyte-app",)


@pytest.mark.idp
def test_entra_client_credentials_without_a_default_scope_fail_before_any_request(
        entra: IdpServer, flyte_for: Callable[..., FlyteTestServer]) -> None:
    entra.reset()
    server = flyte_for(entra, _entra_v2(entra), scopes=("all",))
    config = AuthConfig(endpoint=server.target, insecure=True, auth_type="ClientSecret", client_id=CI_BASIC[0],
                        client_secret=CI_BASIC[1])
    with AuthSession(config, store="memory") as session, pytest.raises(ConfigError) as caught:
        session.get_token()
    assert "/.default" in str(caught.value) and "admin.scopes" in str(caught.value)
    assert entra.token_request_count() == 0


@pytest.mark.idp
def test_an_entra_error_code_is_explained_in_the_users_keys(entra: IdpServer,
                                                           flyte_for: Callable[..., FlyteTestServer]) -> None:
    server = flyte_for(entra, _entra_v2(entra))
    config = AuthConfig(endpoint=server.target, insecure=True, auth_type="ClientSecret", client_id=CI_BASIC[0],
                        client_secret="the-secret-id-not-its-value", scopes=("api://flyte-app/.default",))
    with AuthSession(config, store="memory") as session, pytest.raises(InvalidClientError) as caught:
        session.get_token()
    text = str(caught.value)
    assert "AADSTS7000215" in text and "secret's Value" in text
    assert "the-secret-id-not-its-value" not in text


@pytest.mark.idp
def test_entra_certificate_credentials_need_the_thumbprint(entra: IdpServer, pkjwt_certificate: tuple[Path, str],
                                                          flyte_for: Callable[..., FlyteTestServer]) -> None:
    """private_key_jwt at Entra: without ``clientCertFilePath`` the assertion has no ``x5t#S256`` and Entra
    answers AADSTS700027, which the error explains; with it the token comes."""
    server = flyte_for(entra, _entra_v2(entra))
    base = dict(endpoint=server.target, insecure=True, auth_type="ClientSecret", client_id=CI_PKJWT_ID,
                token_endpoint_auth_method="private_key_jwt", client_key_file_path=str(CI_PKJWT_KEY_PATH),
                scopes=("api://flyte-app/.default",))
    with AuthSession(AuthConfig(**base), store="memory") as session, pytest.raises(InvalidClientError) as caught:
        session.get_token()
    assert "AADSTS700027" in str(caught.value) and "clientCertFilePath" in str(caught.value)
    config = AuthConfig(**base, options={"clientCertFilePath": str(pkjwt_certificate[0])})
    with AuthSession(config, store="memory") as session:
        assert _aud(session.get_token().access_token) == ("api://flyte-app",)


def test_a_certificate_for_another_key_is_a_config_error(tmp_path: Path, pkjwt_certificate: tuple[Path, str]) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from flyteauth_providers.client_credentials import ClientSecretAuthenticator

    other = tmp_path / "other.pem"
    other.write_bytes(rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    config = AuthConfig(endpoint="a:1", client_id="c", token_endpoint_auth_method="private_key_jwt",
                        client_key_file_path=str(other), options={"clientCertFilePath": str(pkjwt_certificate[0])})
    with pytest.raises(ConfigError, match="is not for the key in clientKeyFilePath"):
        ClientSecretAuthenticator(config)
    missing = AuthConfig(endpoint="a:1", client_id="c", token_endpoint_auth_method="private_key_jwt",
                         client_key_file_path=str(CI_PKJWT_KEY_PATH), options={"clientCertFilePath": str(tmp_path)})
    with pytest.raises(ConfigError, match="Cannot read clientCertFilePath"):
        ClientSecretAuthenticator(missing)


@pytest.mark.idp
def test_entra_v1_takes_the_api_as_resource(entra: IdpServer, flyte_for: Callable[..., FlyteTestServer]) -> None:
    server = flyte_for(entra, f"{entra.issuer}/{TENANT}/oauth2/token")
    config = AuthConfig(endpoint=server.target, insecure=True, auth_type="ClientSecret", client_id=CI_BASIC[0],
                        client_secret=CI_BASIC[1], audience="api://flyte-v1", options={"idpProfile": "entra"})
    with AuthSession(config, store="memory") as session:
        assert _aud(session.get_token().access_token) == ("api://flyte-v1",)


def _device_session(idp: IdpServer, server: FlyteTestServer, scopes: tuple[str, ...],
                    **options: Any) -> AuthSession:
    def approve(code: Any) -> None:
        threading.Thread(target=http_device_login, args=(idp, code.verification_uri_complete), daemon=True).start()

    config = AuthConfig(endpoint=server.target, insecure=True, auth_type="DeviceFlow", client_id=NATIVE_CLIENT_ID,
                        scopes=scopes, options=options)
    return AuthSession(config, store="memory", interactive=True, device_prompt=approve)


def _keycloak_server(idp: IdpServer, flyte_for: Callable[..., FlyteTestServer]) -> FlyteTestServer:
    base = f"{idp.issuer}/realms/flyte/protocol/openid-connect"
    return flyte_for(idp, f"{base}/token", client_id=NATIVE_CLIENT_ID,
                     device_authorization_endpoint=f"{base}/auth/device",
                     grant_types=("urn:ietf:params:oauth:grant-type:device_code",))


@pytest.mark.idp
def test_keycloak_device_login_with_pkce_enforced(keycloak: IdpServer,
                                                  flyte_for: Callable[..., FlyteTestServer]) -> None:
    """flyte#4735: Keycloak answers a device authorization without a code challenge with "Bad Request" when
    the client enforces PKCE.  Recognised from its /realms/ path, the login sends one, and its verifier."""
    server = _keycloak_server(keycloak, flyte_for)
    with _device_session(keycloak, server, ("openid", "offline_access", "all")) as session:
        token = session.login()
    assert token.refresh_token  # offline_access asked: Keycloak gives a refresh token


@pytest.mark.idp
def test_device_pkce_is_sent_again_when_an_unrecognised_idp_asks(keycloak: IdpServer,
                                                                  flyte_for: Callable[..., FlyteTestServer]) -> None:
    """A Keycloak behind a path we cannot recognise (idpProfile: generic) still works: its refusal names PKCE,
    so the request is made once more with a challenge; `devicePkce: false` keeps the refusal, explained."""
    server = _keycloak_server(keycloak, flyte_for)
    with _device_session(keycloak, server, ("openid", "offline_access", "all"), idpProfile="generic") as session:
        assert session.login().access_token
    with _device_session(keycloak, server, ("openid", "all"), devicePkce="false") as session, \
            pytest.raises(TokenRequestError, match="PKCE enforced"):
        session.login()


@pytest.mark.idp
def test_a_login_without_offline_access_warns_that_every_expiry_needs_a_login(
        keycloak: IdpServer, flyte_for: Callable[..., FlyteTestServer], caplog: pytest.LogCaptureFixture) -> None:
    server = _keycloak_server(keycloak, flyte_for)
    with caplog.at_level(logging.WARNING, logger="flyteauth"), \
            _device_session(keycloak, server, ("openid", "all")) as session:
        token = session.login()
    assert not token.refresh_token
    warned = [r.getMessage() for r in caplog.records if "offline_access" in r.getMessage()]
    assert warned and "Keycloak" in warned[0] and "admin.scopes" in warned[0]


@pytest.mark.idp
def test_auth0_without_an_audience_gets_an_opaque_token_and_the_doctor_says_why(
        auth0: IdpServer, flyte_for: Callable[..., FlyteTestServer], tmp_path: Path) -> None:
    """Auth0 (flyte#3661): no `audience`, no JWT.  The Flyte server rejects the opaque token; the doctor
    names admin.audience.  With the audience the token is a JWT for that API."""
    from flyteauth_core.doctor import Doctor

    server = flyte_for(auth0, f"{auth0.issuer}/oauth/token")
    secret = tmp_path / "secret"
    secret.write_text(CI_BASIC[1])
    secret.chmod(0o600)
    path = tmp_path / "config.yaml"
    path.write_text(f"admin:\n  endpoint: dns:///{server.target}\n  insecure: true\n  authType: ClientSecret\n"
                    f"  clientId: {CI_BASIC[0]}\n  clientSecretLocation: {secret}\n  idpProfile: auth0\n")
    steps = {r.name: r for r in Doctor(str(path), env={}).run()}
    assert steps["token"].status == "warn"
    assert "admin.audience" in (steps["token"].fix or "") and "opaque" in (steps["token"].fix or "")
    config = AuthConfig(endpoint=server.target, insecure=True, auth_type="ClientSecret", client_id=CI_BASIC[0],
                        client_secret=CI_BASIC[1], audience="https://flyte.example.com/api")
    with AuthSession(config, store="memory") as session:
        assert _aud(session.get_token().access_token) == ("https://flyte.example.com/api",)


@pytest.mark.idp
def test_google_iap_gets_an_id_token_for_its_client_id_from_the_metadata_server(
        idp_fresh: IdpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Google IAP in front of Flyte (flyte#3965, #6089): `proxy-authorization: Bearer <Google ID token for the
    IAP client id>`, here from the GCP metadata server, with no command to write and no key on disk; the
    bearer token for Flyte itself still comes from the IdP."""
    from joserfc import jwt
    from joserfc.errors import JoseError
    from joserfc.jwk import KeySet

    from ._platform_issuer import GCP_EMAIL, PlatformIssuer

    iap_client = "1234-iap.apps.googleusercontent.com"
    with PlatformIssuer("gcp") as metadata:
        keys = KeySet.import_key_set({"keys": [metadata.key.as_dict(private=False)]})

        def iap(token: str) -> str | None:  # what IAP checks: Google's signature, aud = its client id
            try:
                claims = jwt.decode(token, keys).claims
            except (JoseError, ValueError):
                return "not a Google ID token"
            return None if claims.get("aud") == iap_client and claims.get("email") == GCP_EMAIL else "wrong aud"

        monkeypatch.setenv("GCE_METADATA_HOST", metadata.issuer.split("://", 1)[1])
        server = FlyteTestServer(jwt_validator(idp_fresh), token_endpoint=idp_fresh.token_endpoint,
                                 issuer=idp_fresh.issuer, proxy_validate=iap).start()
        try:
            config = AuthConfig(endpoint=server.target, insecure=True, auth_type="ClientSecret",
                                client_id=CI_BASIC[0], client_secret=CI_BASIC[1],
                                options={"proxyTokenSource": "gcp-metadata", "proxyTokenAudience": iap_client})
            with AuthSession(config, store="memory") as session:
                call = session.channel().unary_unary(ECHO["unary"])
                assert [call(b"x", timeout=20) for _ in range(3)] == [b"x"] * 3
            assert server.stats["proxy_denied"] == 0
            assert metadata.stats["id_token_requests"] == 1  # cached until it expires, like any token
        finally:
            server.stop()


def test_a_proxy_token_has_one_source(tmp_path: Path) -> None:
    from flyteauth_providers.proxy_command import ProxyAuthorization

    config = AuthConfig(endpoint="a:1", proxy_command=("echo", "t"), options={"proxyTokenSource": "gcp-metadata",
                                                                             "proxyTokenAudience": "x"})
    with pytest.raises(ConfigError, match="Both proxyCommand and proxyTokenSource"):
        ProxyAuthorization(config)
    with pytest.raises(ConfigError, match="needs the audience"):
        ProxyAuthorization(AuthConfig(endpoint="a:1", options={"proxyTokenSource": "gcp-metadata"}))


@pytest.fixture(scope="module")
def okta() -> Iterator[IdpServer]:
    yield from _start("okta")


def _config_file(tmp_path: Path, server: FlyteTestServer, secret: str, extra: str = "") -> Path:
    secret_path = tmp_path / "secret"
    secret_path.write_text(secret)
    secret_path.chmod(0o600)
    path = tmp_path / "config.yaml"
    path.write_text(f"admin:\n  endpoint: dns:///{server.target}\n  insecure: true\n  authType: ClientSecret\n"
                    f"  clientId: {CI_BASIC[0]}\n  clientSecretLocation: {secret_path}\n{extra}")
    return path


@pytest.mark.idp
def test_the_doctor_names_the_idp_and_explains_its_error_code(entra: IdpServer, tmp_path: Path,
                                                              flyte_for: Callable[..., FlyteTestServer]) -> None:
    from flyteauth_core.doctor import Doctor

    server = flyte_for(entra, _entra_v2(entra))
    path = _config_file(tmp_path, server, "wrong-secret", "  scopes: [api://flyte-app/.default]\n")
    steps = {r.name: r for r in Doctor(str(path), env={}).run()}
    assert "Entra ID v2" in steps["idp"].summary
    assert steps["token"].status == "fail"
    assert "AADSTS7000215" in (steps["token"].fix or "") and "secret's Value" in (steps["token"].fix or "")


@pytest.mark.idp
def test_okta_custom_authorization_server_works_and_is_named(okta: IdpServer, tmp_path: Path,
                                                             flyte_for: Callable[..., FlyteTestServer]) -> None:
    from flyteauth_core.doctor import Doctor

    server = flyte_for(okta, f"{okta.issuer}/oauth2/default/v1/token")
    steps = {r.name: r for r in Doctor(str(_config_file(tmp_path, server, CI_BASIC[1])), env={}).run()}
    assert "Okta" in steps["idp"].summary
    assert steps["token"].status == "ok" and steps["call"].status == "ok"


def test_okta_org_server_is_a_doctor_warning_with_the_fix() -> None:
    profile = recognise("https://acme.okta.com/oauth2/v1/token")
    hints = profile.hints(has_audience=True, scopes=("all",), interactive=False)
    assert hints and "/oauth2/default" in hints[0]
