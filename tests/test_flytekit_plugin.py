"""flytekit with ``authType: flyteauth``: the real flytekit FlyteRemote against a Flyte admin built from
flyteidl's stubs (tests/_flyteadmin.py) and the real test IdP.

Bare flytekit on the same peers (measured in ``benchmarks/compare.py``): 32 cold threads make 32 token
requests, and every expiry costs an UNAUTHENTICATED reply.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("flytekit")

from flytekit.clients.auth_helper import get_authenticator
from flytekit.configuration import Config, PlatformConfig
from flytekit.configuration.file import get_config_file
from flytekit.remote import FlyteRemote

from flyteauth_integrations import flytekit as plugin

from ._flyteadmin import FlyteAdminServer
from ._idp import CI_BASIC, IdpServer
from ._interactive_helpers import free_port, thread_storm
from .conftest import jwt_validator

pytestmark = pytest.mark.idp
REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "plugin_fixtures"


@pytest.fixture
def admin(idp_fresh: IdpServer) -> Iterator[FlyteAdminServer]:
    with FlyteAdminServer(jwt_validator(idp_fresh), token_endpoint=idp_fresh.token_endpoint,
                          authorization_endpoint=idp_fresh.authorization_endpoint) as server:
        yield server


@pytest.fixture
def flytectl_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Path]:
    """Write a flytectl config.yaml and point FLYTECTL_CONFIG at it (as flytekit users do)."""
    for name in list(os.environ):
        if name.startswith(("FLYTE", "UCTL_", "_FLYTECTL")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("FLYTEAUTH_TOKEN_DIR", str(tmp_path / "tokens"))
    (tmp_path / "secret").write_text(CI_BASIC[1] + "\n")
    plugin.reset()
    get_config_file.cache_clear()  # flytekit caches the file it found (lru_cache) for the whole process

    def write(server: FlyteAdminServer, flyteauth: str | None = None) -> Path:
        section = flyteauth if flyteauth is not None else (
            f"  authType: ClientSecret\n  clientId: {CI_BASIC[0]}\n  clientSecretLocation: {tmp_path / 'secret'}\n")
        path = tmp_path / "config.yaml"
        path.write_text(f"admin:\n  endpoint: dns:///{server.target}\n  insecure: true\n  authType: flyteauth\n"
                        f"flyteauth:\n{section}")
        monkeypatch.setenv("FLYTECTL_CONFIG", str(path))
        get_config_file.cache_clear()
        return path

    yield write
    plugin.reset()
    get_config_file.cache_clear()


def remote() -> FlyteRemote:
    return FlyteRemote(Config.auto(), default_project="flytesnacks", default_domain="development")


def test_entry_point_resolves_through_flytekit(admin: FlyteAdminServer, flytectl_config: Callable[..., Path]) -> None:
    flytectl_config(admin)
    cfg = PlatformConfig.auto()
    assert cfg.auth_mode == "flyteauth"
    first, second = get_authenticator(cfg, None), get_authenticator(cfg, None)
    assert isinstance(first, plugin.FlyteauthAuthenticator)
    assert first.session is second.session  # one session per process per (endpoint, config)
    assert first.session.auth_type == "ClientSecret" and first.session.config.insecure
    assert "client_secret" not in repr(first)


def test_32_cold_threads_make_one_token_request(admin: FlyteAdminServer, idp_fresh: IdpServer,
                                                 flytectl_config: Callable[..., Path]) -> None:
    flytectl_config(admin)
    client_remote = remote()  # cold: its client (and flytekit's channels) are built by the racing threads
    results = thread_storm(32, lambda _: client_remote.client.list_projects())
    assert not [r for r in results if isinstance(r, BaseException)]
    assert idp_fresh.token_request_count(CI_BASIC[0]) == 1
    assert admin.stats["unauthenticated"] == 0  # the first call already carried the token
    assert admin.stats["calls"] == 32
    assert admin.stats["discovery"] <= 2  # one discovery (two RPCs) for the process, not one per channel


def test_expiries_cost_no_unauthenticated_reply(admin: FlyteAdminServer, idp_fresh: IdpServer,
                                                flytectl_config: Callable[..., Path]) -> None:
    """Short version of the benchmark (10 s of 3 s tokens): 4 s of the IdP's 2 s tokens, two expiries."""
    flytectl_config(admin)
    client = remote().client
    stop = time.monotonic() + 4.5
    while time.monotonic() < stop:
        client.list_projects()
        time.sleep(0.02)
    assert admin.stats["unauthenticated"] == 0
    assert 2 <= idp_fresh.token_request_count(CI_BASIC[0]) <= 8  # a refresh about every second


def test_unknown_from_the_server_costs_no_idp_request(admin: FlyteAdminServer, idp_fresh: IdpServer,
                                                      flytectl_config: Callable[..., Path]) -> None:
    flytectl_config(admin)
    client = remote().client
    client.list_projects()
    admin.fail_next_unknown = 1  # flytekit's interceptor calls refresh_credentials() and retries
    client.list_projects()
    assert admin.stats["unknown"] == 1
    assert idp_fresh.token_request_count(CI_BASIC[0]) == 1


def test_unauthenticated_from_the_server_refreshes_once(admin: FlyteAdminServer, idp_fresh: IdpServer,
                                                        flytectl_config: Callable[..., Path]) -> None:
    flytectl_config(admin)
    client = remote().client
    client.list_projects()
    validate, rejected = admin.validate, []

    def reject_once(token: str) -> str | None:
        if not rejected:
            rejected.append(token)
            return "revoked"
        return validate(token)

    admin.validate = reject_once
    client.list_projects()
    assert admin.stats["unauthenticated"] == 1
    assert idp_fresh.token_request_count(CI_BASIC[0]) == 2


def test_flytekit_connection_settings_win(admin: FlyteAdminServer, flytectl_config: Callable[..., Path],
                                          tmp_path: Path) -> None:
    """The file says insecure; flytekit's PlatformConfig (what its channel uses) says TLS with a CA: we follow
    flytekit, so discovery and IdP calls go where flytekit's calls go."""
    flytectl_config(admin)
    (tmp_path / "ca.pem").write_text("not used")
    cfg = PlatformConfig(endpoint=admin.target, insecure=False, ca_cert_file_path=str(tmp_path / "ca.pem"),
                         http_proxy_url="http://127.0.0.1:3128", auth_mode="flyteauth")
    config = plugin.session_for(cfg).config
    assert (config.insecure, config.ca_cert_file_path) == (False, str(tmp_path / "ca.pem"))
    assert config.http_proxy_url == "http://127.0.0.1:3128"
    assert config.endpoint.endswith(admin.target)


def test_config_file_given_in_code_is_found(admin: FlyteAdminServer, flytectl_config: Callable[..., Path],
                                            monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = flytectl_config(admin)
    monkeypatch.delenv("FLYTECTL_CONFIG")
    get_config_file.cache_clear()
    assert plugin.config_file() is None
    plugin.use_config_file(path)
    try:
        cfg = PlatformConfig.auto(config_file=str(path))
        assert plugin.session_for(cfg).auth_type == "ClientSecret"
    finally:
        plugin.use_config_file(None)


def test_config_auto_with_a_path_needs_no_other_step(admin: FlyteAdminServer, idp_fresh: IdpServer,
                                                      flytectl_config: Callable[..., Path],
                                                      monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The README's config and ``FlyteRemote(Config.auto(config_file=path))``: no FLYTECTL_CONFIG, no
    use_config_file().  On 0.2.0 the plugin found no file, fell back to Pkce and every call failed."""
    path = flytectl_config(admin)
    monkeypatch.delenv("FLYTECTL_CONFIG")
    monkeypatch.chdir(tmp_path)
    get_config_file.cache_clear()
    assert plugin.config_file() is None  # nothing to find by searching: the path must come from Config.auto
    client = FlyteRemote(Config.auto(config_file=str(path)), default_project="p", default_domain="d").client
    assert client.list_projects().projects[0].id == "flytesnacks"
    assert idp_fresh.token_request_count(CI_BASIC[0]) == 1 and admin.stats["unauthenticated"] == 0
    # Config.for_endpoint copies the PlatformConfig (dataclasses.replace): the file is still found
    copied = Config.for_endpoint(admin.target, insecure=True, config_file=str(path)).platform
    assert plugin.session_for(copied).auth_type == "ClientSecret"
    relative = Config.auto(config_file="config.yaml").platform  # the cwd is tmp_path: kept as an absolute path
    assert plugin.config_file(relative) == str(path)
    # named in code (the user's choice), as opposed to found by flytekit's search (which per-directory trust
    # cares about): Config.auto resolves the file before PlatformConfig.auto sees it, and the hook tells apart
    assert plugin.named_in_code(relative) and plugin.named_in_code(PlatformConfig.auto(config_file=str(path)))
    monkeypatch.setenv("FLYTECTL_CONFIG", str(path))
    get_config_file.cache_clear()
    searched = Config.auto().platform
    assert plugin.config_file(searched) == str(path) and not plugin.named_in_code(searched)


def test_flyteauth_hook_without_a_flyteauth_section_is_an_error(admin: FlyteAdminServer, idp_fresh: IdpServer,
                                                                 flytectl_config: Callable[..., Path],
                                                                 tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """``admin.authType: flyteauth`` and no ``flyteauth:`` section: a ConfigError naming the section at the
    first call (0.2.0 silently chose Pkce: "needs a browser (PKCE) login"); `flyteauth config` agrees."""
    from flyteauth_core import cli
    from flyteauth_core.errors import ConfigError

    path = tmp_path / "hook-only.yaml"
    path.write_text(f"admin:\n  endpoint: dns:///{admin.target}\n  insecure: true\n  authType: flyteauth\n")
    with pytest.raises(ConfigError, match=r"no flyteauth: section") as raised:
        plugin.session_for(PlatformConfig.auto(config_file=str(path)))
    assert "flyteauth:" in (raised.value.hint or "") and "Pkce" in raised.value.message
    with pytest.raises(Exception, match=r"flyteauth: section"):
        FlyteRemote(Config.auto(config_file=str(path)), default_project="p", default_domain="d").client.list_projects()
    assert idp_fresh.token_request_count() == 0
    assert cli.main(["config", "--config", str(path)]) == 1
    assert "auth type:   (none chosen)" in capsys.readouterr().out


def test_third_party_provider_through_flytekit(admin: FlyteAdminServer, idp_fresh: IdpServer,
                                               flytectl_config: Callable[..., Path], tmp_path: Path) -> None:
    """A provider from its own distribution (tests/plugin_fixtures/idp_flyteauth.py), selected in flyteauth:,
    behind flytekit: 32 cold threads, then expiries, in a fresh process where the plugin is installed."""
    site = tmp_path / "site"
    dist = site / "idp_flyteauth-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: idp-flyteauth\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[flyteauth]\nidp = idp_flyteauth\n")
    (site / "idp_flyteauth.py").write_text((FIXTURES / "idp_flyteauth.py").read_text())
    flytectl_config(admin, flyteauth=(f"  authType: AcmeIdp\n  acmeTokenUrl: {idp_fresh.token_endpoint}\n"
                                      f"  acmeSecretFile: {tmp_path / 'secret'}\n"))
    script = (
        "import threading, time\n"
        "from flytekit.configuration import Config\nfrom flytekit.remote import FlyteRemote\n"
        "client_remote = FlyteRemote(Config.auto(), default_project='p', default_domain='d')\n"
        "barrier = threading.Barrier(32)\n"
        "def call():\n    barrier.wait(30); client_remote.client.list_projects()\n"
        "threads = [threading.Thread(target=call) for _ in range(32)]\n"
        "[t.start() for t in threads]; [t.join(60) for t in threads]\n"
        "print('storm', flush=True); input()\n"
        "client = client_remote.client\nstop = time.monotonic() + 4.5\n"
        "while time.monotonic() < stop:\n    client.list_projects(); time.sleep(0.02)\n"
        "print('done', flush=True)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(REPO)])}
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        assert proc.stdout.readline().strip() == "storm", proc.stderr.read() if proc.stderr else ""
        assert idp_fresh.token_request_count(CI_BASIC[0]) == 1
        assert admin.stats["calls"] == 32 and admin.stats["unauthenticated"] == 0
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "done"
    finally:
        proc.kill()
        proc.wait(10)
    assert admin.stats["unauthenticated"] == 0
    assert 2 <= idp_fresh.token_request_count(CI_BASIC[0]) <= 6


def test_pkce_login_once_then_flytekit_needs_no_idp_request(idp_factory: Callable[..., IdpServer],
                                                           flytectl_config: Callable[..., Path],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """`flyteauth login` (Pkce against the real IdP, the browser played over HTTP), then FlyteRemote with
    ``authType: flyteauth`` in the same config: the stored login is used, the IdP sees nothing more."""
    import urllib.request

    from flyteauth_core import cli
    from flyteauth_providers import pkce

    from ._idp import NATIVE_CLIENT_ID, http_login, native_redirect_uri

    idp = idp_factory(token_ttl=300)

    def browser(url: str) -> bool:
        callback = http_login(idp, url)
        urllib.request.urlopen(callback, timeout=10).read()  # the redirect reaches our loopback server
        return True

    monkeypatch.setattr(pkce, "open_browser", browser)
    with FlyteAdminServer(jwt_validator(idp), token_endpoint=idp.token_endpoint, issuer=idp.issuer,
                          authorization_endpoint=idp.authorization_endpoint, client_id=NATIVE_CLIENT_ID,
                          redirect_uri=native_redirect_uri(free_port()), scopes=("openid", "offline_access", "all"),
                          ) as server:
        config = flytectl_config(server, flyteauth="  authType: Pkce\n")
        assert cli.main(["login", "--config", str(config)]) == 0
        before = idp.token_request_count()
        assert before == 1
        monkeypatch.setenv("FLYTEAUTH_INTERACTIVE", "0")
        projects = remote().client.list_projects()
        assert projects.projects[0].id == "flytesnacks"
        assert idp.token_request_count() == before  # 0 IdP requests: flytekit used the stored login
        assert server.stats["unauthenticated"] == 0
        # Headless (no keyring backend here): the login went to the file store, and the credential helper
        # in another process finds it too.
        helper = subprocess.run([sys.executable, "-m", "flyteauth_core.cli", "token"], capture_output=True,
                                text=True, timeout=60, check=False, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert helper.returncode == 0, helper.stderr
        assert jwt_validator(idp)(helper.stdout.strip()) is None
        assert idp.token_request_count() == before
