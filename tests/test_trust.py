"""Per-directory config is trusted only when the user says so (issue 16 item 7).

On 0.2.0 a repository shipping ``.flyte/config.yaml`` with ``authType: ExternalCommand`` and
``command: [sh, -c, ...]`` got that command run by ``flyteauth token`` anywhere inside the clone, and the
same file could point ``tokenUrl`` at its owner while the client secret came from the user's environment.
Every test here uses real files, a real git repository, the real ``flyteauth`` CLI in a subprocess and a
real token endpoint on loopback; the trust records go to a private ``$XDG_CONFIG_HOME``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from flyteauth_core import AuthSession, ConfigError, UntrustedConfigError, load_config
from flyteauth_core import trust as trust_module
from flyteauth_core.config_report import report
from flyteauth_core.testing import DemoTokenEndpoint

REPO = Path(__file__).resolve().parent.parent
MARKER_COMMAND = """[sh, -c, 'touch MARKER; echo "{\\"access_token\\": \\"repo-token\\", \\"expires_in\\": 3600}"']"""
EXTERNAL = f"""admin:
  endpoint: dns:///flyte.example.com
  authType: ExternalCommand
  command: {MARKER_COMMAND}
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME and XDG_CONFIG_HOME of our own, no FLYTE* variables, and a git repository to work in."""
    home = tmp_path / "home"
    home.mkdir()
    for name in list(os.environ):
        if name.startswith(("FLYTE", "UCTL_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("FLYTEAUTH_TOKEN_DIR", str(tmp_path / "tokens"))
    return home


@pytest.fixture
def repo(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A clone under HOME (still a repository), entered at a subdirectory."""
    root = home / "src" / "cloned"
    (root / ".flyte").mkdir(parents=True)
    (root / "pkg").mkdir()
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    monkeypatch.chdir(root / "pkg")
    return root


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "FLYTEAUTH_INTERACTIVE": "0"}
    return subprocess.run([sys.executable, "-m", "flyteauth_core.cli", *args], capture_output=True, text=True,
                          timeout=60, check=False, env=env, cwd=cwd)


def test_flyteauth_token_in_a_cloned_repo_runs_its_command_only_after_flyteauth_trust(repo: Path) -> None:
    config = repo / ".flyte" / "config.yaml"
    config.write_text(EXTERNAL)
    marker = repo / "pkg" / "MARKER"

    refused = _cli("token", cwd=repo / "pkg")
    assert refused.returncode == 2, refused.stderr  # a configuration matter (the helper's documented code)
    assert not marker.exists()  # on 0.2.0 the command ran: the marker existed and the token was printed
    assert refused.stdout == ""
    assert str(config) in refused.stderr and f"flyteauth trust {config}" in refused.stderr
    assert "sh **** ****" in refused.stderr and "touch" not in refused.stderr  # masked like flyteauth config
    status = _cli("status", cwd=repo / "pkg")
    assert status.returncode == 0 and "not trusted" in status.stdout and f"flyteauth trust {config}" in status.stdout

    trusted = _cli("trust", cwd=repo / "pkg")  # no PATH: the file the search finds (the git root's)
    assert trusted.returncode == 0 and str(config) in trusted.stdout
    assert "it may now run `sh **** ****`" in trusted.stdout  # what was just allowed, masked
    record = next(trust_module.trust_directory().glob("*.json"))
    assert record.stat().st_mode & 0o777 == 0o600 and record.parent.stat().st_mode & 0o777 == 0o700

    ran = _cli("token", cwd=repo / "pkg")
    assert ran.returncode == 0 and ran.stdout.strip() == "repo-token" and marker.exists()

    marker.unlink()
    config.write_text(EXTERNAL + "  # edited after it was trusted\n")
    again = _cli("token", cwd=repo / "pkg")
    assert again.returncode == 2 and "has changed since you trusted it" in again.stderr
    listed = _cli("trust", "--list", cwd=repo)
    assert listed.stdout.split()[:2] == ["changed", os.path.realpath(config)]
    assert not marker.exists()

    config.write_text(EXTERNAL)  # back to the trusted content: the cached token serves it
    assert _cli("token", cwd=repo / "pkg").stdout.strip() == "repo-token"
    revoked = _cli("trust", "--revoke", str(config), cwd=repo)
    assert revoked.returncode == 0
    after = _cli("token", cwd=repo / "pkg")  # the helper's cache was cleared with the trust
    assert after.returncode == 2 and not marker.exists()


def test_a_file_the_user_named_or_a_user_level_file_needs_no_trust(repo: Path, home: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    config = repo / ".flyte" / "config.yaml"
    config.write_text(EXTERNAL)
    assert load_config().trust is not None and not load_config().trust.trusted
    assert load_config(config).trust is None  # load_config(path), --config
    for var in ("FLYTECTL_CONFIG", "FLYTEAUTH_CONFIG", "UCTL_CONFIG"):
        monkeypatch.setenv(var, str(config))
        assert load_config().trust is None, var
        monkeypatch.delenv(var)
    (home / ".flyte").mkdir()
    (home / ".flyte" / "config.yaml").write_text(EXTERNAL)
    config.unlink()
    monkeypatch.chdir(home)  # ./.flyte/config.yaml here *is* ~/.flyte/config.yaml
    assert load_config().trust is None
    (home / "config.yaml").write_text(EXTERNAL)  # but ./config.yaml in HOME is not a user-level file
    assert load_config().trust is not None


def test_a_secret_from_the_environment_never_reaches_a_token_url_the_file_chose(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with DemoTokenEndpoint("ci", "env-secret", ttl=600) as idp:
        (repo / ".flyte" / "config.yaml").write_text(
            f"admin:\n  endpoint: dns:///127.0.0.1:9\n  insecure: true\n  clientId: ci\n  tokenUrl: {idp.url}\n")
        monkeypatch.setenv("FLYTE_CREDENTIALS_CLIENT_SECRET", "env-secret")
        with AuthSession(load_config(), interactive=False) as early:
            with pytest.raises(UntrustedConfigError) as raised:
                early.get_token()
            assert idp.requests == 0  # 0.2.0: the secret was posted to the file's tokenUrl
            assert early.store is None  # nothing read from, or written to, a store the file names
            host = idp.url.split("/")[2]
            assert f"to {host}" in raised.value.message and "ClientSecret" in raised.value.message
            trust_module.trust_file(repo / ".flyte" / "config.yaml")
            with pytest.raises(ConfigError, match="trusted after this session was built"):
                early.get_token()  # a session built before keeps refusing, and says what to do now
        with AuthSession(load_config(), interactive=False) as session:
            assert session.get_token().access_token
        assert idp.requests == 1


def test_an_interactive_login_for_an_untrusted_endpoint_starts_nothing(repo: Path) -> None:
    (repo / ".flyte" / "config.yaml").write_text("admin:\n  endpoint: dns:///127.0.0.1:9\n  insecure: true\n")
    opened: list[str] = []
    session = AuthSession(load_config(), interactive=True, browser_opener=lambda url: bool(opened.append(url)))
    with session, pytest.raises(UntrustedConfigError) as raised:
        session.login()
    assert opened == [] and "authType Pkce" in raised.value.message


def test_a_proxy_command_from_the_environment_is_not_run_for_an_untrusted_endpoint(
        repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command is the user's, the endpoint its token would go to is the file's: refused too."""
    (repo / ".flyte" / "config.yaml").write_text("admin:\n  endpoint: dns:///127.0.0.1:9\n  authType: NoAuth\n")
    monkeypatch.setenv("FLYTE_AUTH_PROXY_COMMAND", f"sh -c 'touch {repo / 'PROXY'}; echo tok'")
    with AuthSession(load_config(), interactive=False) as session, pytest.raises(UntrustedConfigError) as raised:
        session.manager.metadata()
    assert not (repo / "PROXY").exists() and "(proxyCommand)" in raised.value.message
    monkeypatch.delenv("FLYTE_AUTH_PROXY_COMMAND")
    with AuthSession(load_config(), interactive=False) as session:  # NoAuth alone sends nothing: it works
        assert session.anonymous and not session.interceptor.metadata()


def test_flyteauth_config_and_doctor_show_an_untrusted_file_without_running_it(repo: Path) -> None:
    config = repo / ".flyte" / "config.yaml"
    config.write_text(EXTERNAL + "flyteauth:\n  platformTokenCommand: [gcloud, auth, --secret-flag=hunter2]\n")
    shown = report(load_config())
    problem = next(p for p in shown.problems if p.state == "untrusted")
    assert problem.severity == "error" and problem.key == str(config)
    assert f"flyteauth trust {config}" in problem.fix
    assert "gcloud ****" in problem.message and "hunter2" not in problem.message
    assert not shown.ok

    from flyteauth_core.doctor import Doctor

    steps = Doctor(env=dict(os.environ), timeout=2).run()
    assert steps[0].status == "fail" and f"flyteauth trust {config}" in (steps[0].fix or "")
    assert all(step.status == "not run" for step in steps[1:])
    assert not (repo / "pkg" / "MARKER").exists()


def test_flyteauth_config_masks_platform_token_command_arguments(tmp_path: Path) -> None:
    """Issue 16 item 8: 0.2.0 printed ``[gcloud, auth, --secret-flag=hunter2]``."""
    config = tmp_path / "config.yaml"
    config.write_text("admin:\n  endpoint: dns:///flyte.example.com\n  authType: TokenExchange\n"
                      "flyteauth:\n  platformTokenCommand: [gcloud, auth, --secret-flag=hunter2]\n")
    out = _cli("config", "--config", str(config), cwd=tmp_path)
    assert "gcloud **** ****" in out.stdout and "hunter2" not in out.stdout + out.stderr
    as_json = _cli("config", "--json", "--config", str(config), cwd=tmp_path)
    rows = {r["key"]: r["value"] for r in json.loads(as_json.stdout)["settings"]}
    assert rows["flyteauth.platformTokenCommand"] == "gcloud **** ****"
    string_form = tmp_path / "string.yaml"  # a string is split first, never shown whole
    string_form.write_text(config.read_text().replace("[gcloud, auth, --secret-flag=hunter2]",
                                                      '"gcloud auth --secret-flag=hunter2"'))
    out = _cli("config", "--config", str(string_form), cwd=tmp_path)
    assert "gcloud **** ****" in out.stdout and "hunter2" not in out.stdout


def test_records_in_a_directory_others_can_write_are_ignored(repo: Path) -> None:
    config = repo / ".flyte" / "config.yaml"
    config.write_text(EXTERNAL)
    trust_module.trust_file(config)
    assert load_config().trust.trusted
    trust_module.trust_directory().chmod(0o777)  # anyone could have written the record
    found = load_config().trust
    assert not found.trusted and "writable by others" in found.reason


def test_flytekit_plugin_treats_its_searched_flytekit_config_like_ours(repo: Path, monkeypatch: pytest.MonkeyPatch
                                                                       ) -> None:
    """flytekit finds ./flytekit.config by its own search and tells us only the path; the plugin passes
    ``found=True`` so that file needs trust, while ``use_config_file(path)`` is the user's choice."""
    flytekit = pytest.importorskip("flyteauth_integrations.flytekit")
    from flytekit.configuration import PlatformConfig

    monkeypatch.chdir(repo)
    (repo / "flytekit.config").write_text(
        f"[platform]\nurl = 127.0.0.1:9\ninsecure = true\n[credentials]\nauth_mode = ExternalCommand\n"
        f"command = sh,-c,touch {repo / 'MARKER'}\n")
    cfg = PlatformConfig(endpoint="127.0.0.1:9", insecure=True)
    from flytekit.configuration.file import get_config_file

    get_config_file.cache_clear()  # flytekit caches its search (done once at import, from another cwd)
    path = flytekit.config_file()
    assert path is not None and Path(path).resolve() == (repo / "flytekit.config").resolve()
    config = flytekit.resolve_config(cfg, path)
    assert config.trust is not None and not config.trust.trusted
    monkeypatch.setenv("_FLYTECTL_CONFIG_PYFLYTE_OVERRIDE", path)  # pyflyte --config names it
    assert flytekit.resolve_config(cfg, path).trust is None
    monkeypatch.delenv("_FLYTECTL_CONFIG_PYFLYTE_OVERRIDE")
    flytekit.use_config_file(path)
    try:
        assert flytekit.resolve_config(cfg, flytekit.config_file()).trust is None
    finally:
        flytekit.use_config_file(None)
    assert load_config().trust is not None  # ./flytekit.config through our own search: the same answer
    assert not (repo / "MARKER").exists()


@pytest.fixture(autouse=True)
def _no_stray_sessions() -> Iterator[None]:
    yield
    try:
        from flyteauth_integrations import flytekit
    except ImportError:
        return
    flytekit.reset()
