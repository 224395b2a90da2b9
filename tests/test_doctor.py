"""``flyteauth doctor`` against the real test IdP and the in-process Flyte test server.

Each broken link of the chain fails its own step, with a fix that names the config key to change.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from flyteauth_core.doctor import STEPS, Doctor, StepResult, exit_code, render_step
from flyteauth_core.testing import FlyteTestServer

from ._idp import CI_BASIC, IdpServer, make_test_ca

pytestmark = pytest.mark.idp

OTHER_AUDIENCE = "http://flyte.other/api"


def write_config(tmp_path: Path, server: FlyteTestServer | None = None, *, endpoint: str | None = None,
                 secret: str | None = CI_BASIC[1], extra: str = "") -> Path:
    """A flytectl config for the ci-basic client with its secret in a 0600 file."""
    secret_file = tmp_path / "client_secret"
    if secret is not None:
        secret_file.write_text(secret + "\n")
        secret_file.chmod(0o600)
    assert endpoint or server
    config = tmp_path / "config.yaml"
    config.write_text(
        f"admin:\n  endpoint: {endpoint or f'dns:///{server.target}'}\n  insecure: true\n"  # type: ignore[union-attr]
        f"  authType: ClientSecret\n  clientId: {CI_BASIC[0]}\n  clientSecretLocation: {secret_file}\n{extra}"
    )
    return config


def run(config: Path, monkeypatch: pytest.MonkeyPatch) -> list[StepResult]:
    monkeypatch.delenv("FLYTE_CREDENTIALS_CLIENT_SECRET", raising=False)
    return Doctor(str(config), timeout=5).run()


def first_failure(results: list[StepResult]) -> StepResult:
    failed = [r for r in results if r.status == "fail"]
    assert failed, [(r.name, r.status, r.summary) for r in results]
    return failed[0]


def assert_not_run_after(results: list[StepResult], number: int) -> None:
    assert [r.status for r in results[number:]] == ["not run"] * (len(STEPS) - number)


def test_a_good_config_passes_every_step(idp_fresh: IdpServer, flyte_server: Callable[..., FlyteTestServer],
                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = flyte_server()
    results = run(write_config(tmp_path, server), monkeypatch)
    assert [(r.name, r.status) for r in results] == [(name, "ok") for name in STEPS], [r.summary for r in results]
    assert exit_code(results) == 0
    by_name = {r.name: r for r in results}
    assert by_name["discovery"].details["service"] == "flyteidl2.auth.AuthMetadataService (v2)"
    assert by_name["discovery"].details["header_key"] == "flyte-authorization"
    assert by_name["discovery"].details["token_endpoint"] == idp_fresh.token_endpoint
    token = by_name["token"].details
    assert token["grant"] == "client_credentials" and token["client_auth"] == "client_secret_basic"
    assert token["format"] == "JWT" and token["audience"] == ["http://flyte.test/api"] and token["scopes"] == ["all"]
    assert 0 < token["lifetime_s"] <= idp_fresh.token_ttl
    assert by_name["call"].details["subject"] == CI_BASIC[0]
    assert idp_fresh.token_request_count(CI_BASIC[0]) == 1  # one token for the whole walk


def test_every_step_passes_against_flyteauths_own_demo_peers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    """A new user's first doctor run, against ``flyteauth_core.testing``'s peers: that token endpoint answers a
    GET with 501 (POST only), which means reachable, not an IdP failure."""
    from flyteauth_core.testing import DemoTokenEndpoint

    with DemoTokenEndpoint(CI_BASIC[0], CI_BASIC[1], ttl=600) as idp, \
            FlyteTestServer(idp.validate, token_endpoint=idp.url) as server:
        results = run(write_config(tmp_path, server), monkeypatch)
        assert [(r.name, r.status) for r in results] == [(name, "ok") for name in STEPS], \
            [r.summary for r in results]
        assert "HTTP 501 to a GET" in results[3].summary and idp.requests == 1


def test_the_v1_identity_service_is_used_when_the_server_only_speaks_v1(
        idp_fresh: IdpServer, flyte_server: Callable[..., FlyteTestServer], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    results = run(write_config(tmp_path, flyte_server(versions=("v1",))), monkeypatch)
    assert exit_code(results) == 0
    assert results[2].details["service"] == "flyteidl.service.AuthMetadataService (v1)"
    assert results[5].details["version"] == "v1"


def test_a_missing_secret_file_fails_at_the_config_step_before_any_network_call(
        idp_fresh: IdpServer, flyte_server: Callable[..., FlyteTestServer], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = flyte_server()
    results = run(write_config(tmp_path, server, secret=None), monkeypatch)
    failed = first_failure(results)
    assert (failed.number, failed.key, failed.key_state) == (1, "admin.clientSecretLocation", "wrong")
    assert "does not exist" in failed.summary and str(tmp_path / "client_secret") in failed.summary
    assert exit_code(results) == 1
    assert_not_run_after(results, 1)
    assert sum(server.stats.values()) == 0 and idp_fresh.token_request_count() == 0


def test_an_unset_secret_location_says_it_is_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("admin:\n  endpoint: dns:///127.0.0.1:9\n  authType: ClientSecret\n  clientId: ci\n")
    failed = first_failure(run(config, monkeypatch))
    assert (failed.number, failed.key, failed.key_state) == (1, "admin.clientSecretLocation", "unset")


def test_loader_errors_name_their_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for var in [v for v in os.environ if v.startswith(("FLYTE", "UCTL"))]:
        monkeypatch.delenv(var)
    monkeypatch.setenv("HOME", str(tmp_path))
    failed = first_failure(Doctor(None).run())
    assert (failed.number, failed.key, failed.key_state) == (1, "admin.endpoint", "unset")
    monkeypatch.setenv("FLYTE_ADMIN_ENDPOINT", "dns:///127.0.0.1:9")
    monkeypatch.setenv("FLYTE_ADMIN_INSECURE", "maybe")
    failed = first_failure(Doctor(None).run())
    assert (failed.number, failed.key, failed.key_state) == (1, "$FLYTE_ADMIN_INSECURE", "wrong")


def test_a_wrong_secret_fails_at_the_token_step(idp_fresh: IdpServer, flyte_server: Callable[..., FlyteTestServer],
                                               tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = run(write_config(tmp_path, flyte_server(), secret="not-the-secret"), monkeypatch)
    failed = first_failure(results)
    assert (failed.number, failed.name, failed.key, failed.key_state) == (5, "token", "admin.clientSecretLocation",
                                                                         "wrong")
    assert "rejected client 'ci-basic'" in failed.summary and "invalid_client" in failed.summary
    assert failed.fix is not None and "admin.clientSecretLocation" in failed.fix
    assert exit_code(results) == 5
    assert [r.status for r in results[:4]] == ["ok"] * 4
    assert idp_fresh.token_request_count(CI_BASIC[0]) == 1  # one attempt: the doctor does not retry a refusal


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_a_wrong_endpoint_port_fails_at_the_endpoint_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = _closed_port()
    results = run(write_config(tmp_path, endpoint=f"dns:///127.0.0.1:{port}"), monkeypatch)
    failed = first_failure(results)
    assert (failed.number, failed.key, failed.key_state) == (2, "admin.endpoint", "wrong")
    assert f"127.0.0.1:{port}" in failed.summary and "connection refused" in failed.summary
    assert failed.fix is not None and "port in admin.endpoint" in failed.fix
    assert_not_run_after(results, 2)


def test_a_server_expecting_another_audience_fails_the_call_naming_admin_audience(
        idp_fresh: IdpServer, flyte_server: Callable[..., FlyteTestServer], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = flyte_server(audience=OTHER_AUDIENCE, expected_audience=OTHER_AUDIENCE)
    results = run(write_config(tmp_path, server), monkeypatch)
    failed = first_failure(results)
    assert (failed.number, failed.name, failed.key, failed.key_state) == (6, "call", "admin.audience", "unset")
    assert failed.details["token_audience"] == ["http://flyte.test/api"]
    assert failed.details["advertised_audience"] == OTHER_AUDIENCE
    assert "rejected the token" in failed.summary
    assert failed.fix is not None and f"admin.audience: {OTHER_AUDIENCE}" in failed.fix
    # ... and the fix works: with the audience set, every step passes.
    fixed = run(write_config(tmp_path, server, extra=f"  audience: {OTHER_AUDIENCE}\n"), monkeypatch)
    assert exit_code(fixed) == 0, [r.summary for r in fixed]


def test_an_audience_the_server_does_not_advertise_is_found_from_its_message(
        idp_fresh: IdpServer, flyte_server: Callable[..., FlyteTestServer], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = flyte_server(expected_audience=OTHER_AUDIENCE)
    failed = first_failure(run(write_config(tmp_path, server, extra="  audience: http://wrong/\n"), monkeypatch))
    assert (failed.number, failed.key, failed.key_state) == (6, "admin.audience", "wrong")
    assert failed.details["token_audience"] == ["http://wrong/"]


def test_a_server_reading_another_header_key_fails_the_call_naming_admin_authorization_header(
        idp_fresh: IdpServer, flyte_server: Callable[..., FlyteTestServer], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = flyte_server(header_key="flyte-authorization")
    results = run(write_config(tmp_path, server, extra="  authorizationHeader: authorization\n"), monkeypatch)
    assert results[2].status == "warn" and results[2].key == "admin.authorizationHeader"  # seen at discovery
    failed = first_failure(results)
    assert (failed.number, failed.key, failed.key_state) == (6, "admin.authorizationHeader", "wrong")
    assert failed.details["header_key"] == "authorization"
    assert failed.details["tried_header_key"] == "flyte-authorization"
    assert failed.fix is not None and "flyte-authorization" in failed.fix


def test_a_server_advertising_one_header_key_and_reading_another_is_caught_by_trying_the_other(
        idp_fresh: IdpServer, flyte_server: Callable[..., FlyteTestServer], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = flyte_server(header_key="flyte-authorization", advertised_header_key="authorization")
    failed = first_failure(run(write_config(tmp_path, server), monkeypatch))
    assert (failed.number, failed.key, failed.key_state) == (6, "admin.authorizationHeader", "unset")
    assert failed.fix == "Set admin.authorizationHeader: flyte-authorization"


def test_a_dead_proxy_for_the_idp_fails_at_the_idp_step_naming_admin_http_proxy_url(
        idp_fresh: IdpServer, flyte_server: Callable[..., FlyteTestServer], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = f"http://user:proxy-pw-51@127.0.0.1:{_closed_port()}"
    results = run(write_config(tmp_path, flyte_server(), extra=f"  httpProxyURL: {proxy}\n"), monkeypatch)
    failed = first_failure(results)
    assert (failed.number, failed.key) == (4, "admin.httpProxyURL")
    assert "proxy-pw-51" not in json.dumps([r.to_dict() for r in results])


def test_a_server_whose_clock_is_ahead_is_diagnosed_as_clock_skew(
        idp_fresh: IdpServer, flyte_server: Callable[..., FlyteTestServer], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from flyteauth_core.claims import unverified_claims

    def server_clock_one_hour_ahead(token: str) -> str | None:
        exp = unverified_claims(token)["exp"]
        return f"token is expired (exp {exp}, server time {time.time() + 3600:.0f})"

    server = flyte_server(validate=server_clock_one_hour_ahead)
    failed = first_failure(run(write_config(tmp_path, server), monkeypatch))
    assert (failed.number, failed.key) == (6, None)
    assert "clock skew" in failed.summary and "NTP" in (failed.fix or "")
    assert {"token_iat", "token_exp", "local_time"} <= set(failed.details)


def test_an_idp_that_is_down_fails_at_the_idp_step(idp_factory: Callable[..., IdpServer],
                                                   flyte_server: Callable[..., FlyteTestServer], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    down = idp_factory()
    token_endpoint = down.token_endpoint
    down.stop()
    server = flyte_server(token_endpoint=token_endpoint, issuer=token_endpoint.rsplit("/", 1)[0])
    results = run(write_config(tmp_path, server), monkeypatch)
    failed = first_failure(results)
    assert (failed.number, failed.name, failed.key) == (4, "idp", "admin.tokenUrl")
    assert token_endpoint in failed.summary and "unreachable" in failed.summary
    assert failed.details["from"] == "the server's discovery"
    assert failed.fix is not None and "admin.tokenUrl" in failed.fix
    assert_not_run_after(results, 4)


def test_an_untrusted_tls_certificate_shows_its_subject_and_issuer(
        idp_factory: Callable[..., IdpServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Any TLS server will do for the endpoint step: the IdP in TLS mode, with a CA we do not trust.
    ca, cert, key = make_test_ca(tmp_path)
    tls = idp_factory(tls=(cert, key), ca_path=ca)
    config = write_config(tmp_path, endpoint=f"dns:///127.0.0.1:{tls.port}")
    config.write_text(config.read_text().replace("  insecure: true\n", ""))
    failed = first_failure(run(config, monkeypatch))
    assert (failed.number, failed.key, failed.key_state) == (2, "admin.caCertFilePath", "unset")
    assert "not trusted" in failed.summary and "issuer" in failed.summary
    assert failed.details["issuer"] and failed.details["subject"]
    # A plaintext config against the same TLS server is told that the server speaks TLS.
    config.write_text(config.read_text() + "  insecure: true\n")
    failed = first_failure(run(config, monkeypatch))
    assert (failed.number, failed.key) == (2, "admin.insecure")


def test_an_idp_with_an_untrusted_certificate_fails_at_the_idp_step_until_its_ca_is_set(
        idp_factory: Callable[..., IdpServer], flyte_server: Callable[..., FlyteTestServer], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    ca, cert, key = make_test_ca(tmp_path)
    idp = idp_factory(tls=(cert, key), ca_path=ca, token_ttl=60)
    server = flyte_server(token_endpoint=idp.token_endpoint, issuer=idp.issuer)
    results = run(write_config(tmp_path, server), monkeypatch)
    failed = first_failure(results)
    assert (failed.number, failed.key, failed.key_state) == (4, "admin.idpCaCertFilePath", "unset")
    assert "not trusted" in failed.summary and failed.details["issuer"]
    fixed = run(write_config(tmp_path, server, extra=f"  idpCaCertFilePath: {ca}\n"), monkeypatch)
    assert exit_code(fixed) == 0, [(r.name, r.summary) for r in fixed]
    assert fixed[3].details["tls"] == "verified"


def test_an_interactive_provider_without_a_stored_login_stops_before_a_browser(
        idp_fresh: IdpServer, flyte_server: Callable[..., FlyteTestServer], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    server = flyte_server(client_id="flyte-native", authorization_endpoint=idp_fresh.authorization_endpoint,
                          grant_types=("authorization_code", "refresh_token"))
    config = tmp_path / "config.yaml"
    config.write_text(f"admin:\n  endpoint: dns:///{server.target}\n  insecure: true\n  authType: Pkce\n"
                      "  tokenStore: memory\n")
    monkeypatch.setenv("FLYTEAUTH_INTERACTIVE", "1")  # even where a browser could open, the doctor won't
    results = run(config, monkeypatch)
    failed = first_failure(results)
    assert (failed.number, failed.name) == (5, "token")
    assert failed.fix is not None and "flyteauth login" in failed.fix
    assert idp_fresh.stats()["authorize_requests"] == 0


def test_an_interactive_provider_reuses_a_stored_login(
        idp_factory: Callable[..., IdpServer], flyte_server: Callable[..., FlyteTestServer], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx2

    from flyteauth_core import AuthSession, Token, load_config

    idp = idp_factory(token_ttl=300)  # the stored login must stay fresh however slow this machine is
    server = flyte_server(client_id="flyte-native", authorization_endpoint=idp.authorization_endpoint,
                          token_endpoint=idp.token_endpoint, issuer=idp.issuer)
    config = tmp_path / "config.yaml"
    config.write_text(f"admin:\n  endpoint: dns:///{server.target}\n  insecure: true\n  authType: Pkce\n"
                      "  tokenStore: file\n")
    monkeypatch.setenv("FLYTEAUTH_TOKEN_DIR", str(tmp_path / "tokens"))
    # What an earlier `flyteauth login` left in the store: a token the IdP signed.
    body = httpx2.post(idp.token_endpoint, auth=CI_BASIC,
                       data={"grant_type": "client_credentials", "scope": "all"}).json()
    with AuthSession(load_config(config), interactive=False) as session:
        assert session.store is not None
        session.store.save(session.identity().store_key,
                           Token(body["access_token"], expires_at=time.time() + body["expires_in"]))
    results = run(config, monkeypatch)
    assert exit_code(results) == 0, [(r.name, r.summary) for r in results]
    assert results[4].details["grant"] == "stored login"
    assert idp.stats()["authorize_requests"] == 0 and idp.token_request_count() == 1  # ours, above


def test_an_external_command_skips_the_idp_step(flyte_server: Callable[..., FlyteTestServer], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    server = flyte_server(validate=lambda token: None if token == "opaque-cmd-token" else "unknown token")
    config = tmp_path / "config.yaml"
    config.write_text(f"admin:\n  endpoint: dns:///{server.target}\n  insecure: true\n  authType: ExternalCommand\n"
                      f"  command: [{sys.executable}, -c, 'print(\"opaque-cmd-token\")']\n")
    results = run(config, monkeypatch)
    assert [r.status for r in results] == ["ok", "ok", "ok", "skipped", "ok", "ok"], [r.summary for r in results]
    assert results[4].details["format"] == "opaque" and results[4].details["grant"] == "external command"
    assert exit_code(results) == 0


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("FLYTE", "FLYTEAUTH"))}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "flyteauth_core.cli", *args], capture_output=True, text=True,
                          env=full_env, timeout=120, check=False)


def test_cli_prints_each_step_and_exits_with_the_failing_step_number(
        idp_fresh: IdpServer, flyte_server: Callable[..., FlyteTestServer], tmp_path: Path) -> None:
    server = flyte_server()
    good = _cli("doctor", "--config", str(write_config(tmp_path, server)))
    assert good.returncode == 0, good.stdout + good.stderr
    for number, name in enumerate(STEPS, start=1):
        assert f"[{number}/6] {name}" in good.stdout
    assert "all steps passed" in good.stdout and " ms " in good.stdout
    assert CI_BASIC[1] not in good.stdout + good.stderr
    bad = _cli("doctor", "--json", "--config", str(write_config(tmp_path, server, secret="wrong-secret-value")))
    assert bad.returncode == 5, bad.stderr
    data: dict[str, Any] = json.loads(bad.stdout)
    assert data["ok"] is False and data["exit_code"] == 5
    assert [s["status"] for s in data["steps"]] == ["ok", "ok", "ok", "ok", "fail", "not run"]
    assert data["steps"][4]["key"] == "admin.clientSecretLocation"
    assert all(isinstance(s["seconds"], float) for s in data["steps"])
    assert "wrong-secret-value" not in bad.stdout + bad.stderr


def test_a_misspelt_key_warns_and_every_network_step_still_runs(
        idp_fresh: IdpServer, flyte_server: Callable[..., FlyteTestServer], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """One severity: a warning at runtime, in `flyteauth config`, and here (0.2.0: FAIL at step 1, no
    network step run)."""
    server = flyte_server()
    results = run(write_config(tmp_path, server, extra="  clientIdd: typo\n"), monkeypatch)
    assert [(r.name, r.status) for r in results] == [("config", "warn")] + [(n, "ok") for n in STEPS[1:]]
    assert "admin.clientIdd" in results[0].summary and results[0].fix == "Rename admin.clientIdd to admin.clientId"
    assert exit_code(results) == 0
    shown = render_step(results[0])  # 0.2.0 printed "explicit authType" on the summary line and again below it
    assert shown.count("authType ClientSecret") == 1 and "explicit authType" not in shown, shown


def test_a_token_url_other_than_the_advertised_one_is_called_out_with_the_idps_own_words(
        idp_fresh: IdpServer, flyte_server: Callable[..., FlyteTestServer], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """tokenUrl names another IdP's token endpoint, which does not offer client_credentials: step 4 warns that
    it is not the advertised one, step 5 shows the IdP's answer and names admin.tokenUrl (0.2.0: "See the
    IdP's message", not shown, and nothing about the differing URL)."""
    from ._oauth_fake import FakeOAuthServer

    server = flyte_server()
    with FakeOAuthServer() as other:
        results = run(write_config(tmp_path, server, extra=f"  tokenUrl: {other.token_endpoint}\n"), monkeypatch)
    by_name = {r.name: r for r in results}
    assert by_name["idp"].status == "warn" and by_name["idp"].key == "admin.tokenUrl"
    assert f"is not the token endpoint the server advertises ({idp_fresh.token_endpoint})" in by_name["idp"].summary
    token = by_name["token"]
    assert token.status == "fail" and token.key == "admin.tokenUrl" and token.key_state == "wrong"
    assert "the IdP said: {\"error\": \"invalid_client\"" in token.summary  # the other IdP's own words
    assert f"Remove admin.tokenUrl to use the advertised {idp_fresh.token_endpoint}" in (token.fix or "")
    assert CI_BASIC[1] not in token.summary + (token.fix or "")


def test_the_idps_text_is_masked() -> None:
    """A long opaque string an IdP echoes (a token, a secret) never reaches the doctor's output."""
    from flyteauth_providers._oauth import idp_excerpt

    class Body:
        text = "<html><b>Bad request</b> for assertion eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl</html>"

    assert idp_excerpt(Body()) == "Bad request for assertion ****"


def test_the_flytekit_hook_without_a_provider_fails_step_1_naming_the_section(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """0.2.0 went on as Pkce and stopped at step 5 asking for a browser login."""
    config = tmp_path / "config.yaml"
    config.write_text("admin:\n  endpoint: dns:///127.0.0.1:9\n  insecure: true\n  authType: flyteauth\n")
    results = run(config, monkeypatch)
    first = first_failure(results)
    assert first.number == 1 and "no flyteauth: section" in first.summary and first.key == "admin.authType"
    assert "flyteauth:" in (first.fix or "")
    assert_not_run_after(results, 1)
