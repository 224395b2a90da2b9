"""The plugin registry: third-party distributions, broken plugins, conflicts, blocking, aliases, hooks.

Tests that need real distributions build ``<name>-<version>.dist-info`` directories in a temporary
"site" directory (module sources come from ``tests/plugin_fixtures/``) and run a subprocess with that
directory on ``PYTHONPATH``, so ``importlib.metadata`` finds them exactly as it finds installed packages,
and the process-wide default registry starts empty.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import textwrap
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import pytest

from flyteauth_core import AuthConfig, AuthSession, Token, hookimpl
from flyteauth_core.errors import UnknownAuthTypeError
from flyteauth_core.events import TokenEvent
from flyteauth_core.plugins import BLOCK_ENV, PluginRegistry, default_registry

FIXTURES = Path(__file__).parent / "plugin_fixtures"
CONSOLE_SCRIPT = Path(sys.executable).with_name("flyteauth")


# -- building fake distributions ------------------------------------------------------------------------
def make_dist(site: Path, name: str, version: str, entry_points: dict[str, str], modules: tuple[str, ...]) -> None:
    """A real, minimal installed distribution: METADATA, entry_points.txt, and its top-level modules."""
    dist_info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    eps = "".join(f"{ep} = {target}\n" for ep, target in entry_points.items())
    (dist_info / "entry_points.txt").write_text(f"[flyteauth]\n{eps}")
    for module in modules:
        shutil.copy(FIXTURES / f"{module}.py", site / f"{module}.py")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A site directory holding acme-flyteauth 1.2.3 (good) and broken-flyteauth 0.0.1 (fails to import)."""
    site = tmp_path / "site"
    make_dist(site, "acme-flyteauth", "1.2.3", {"acme": "acme_flyteauth"}, ("acme_flyteauth",))
    make_dist(site, "broken-flyteauth", "0.0.1",
              {"broken": "broken_flyteauth", "missing": "broken_flyteauth_not_shipped"}, ("broken_flyteauth",))
    return site


def _env(site: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (BLOCK_ENV, "PYTHONPATH", "FLYTECTL_CONFIG")}
    env["PYTHONPATH"] = str(site)
    env.update(extra)
    return env


PRELUDE = textwrap.dedent(
    """
    import json, sys
    import attrs
    from flyteauth_core import AuthSession, load_config
    from flyteauth_core.errors import FlyteAuthError
    from flyteauth_core.plugins import PluginRegistry, default_registry

    def listing(registry):
        return [attrs.asdict(p) for p in registry.plugins()]

    def error(exc):
        return {"type": type(exc).__name__, "message": str(exc)}

    out = {}
    """
)


def run_py(code: str, site: Path, **env: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", PRELUDE + textwrap.dedent(code) + "\nprint(json.dumps(out))\n"],
        env=_env(site, **env), cwd=site.parent, capture_output=True, text=True, timeout=60, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def by_name(listing: list[dict[str, Any]], name: str, distribution: str | None = None) -> dict[str, Any]:
    matches = [p for p in listing if p["name"] == name and distribution in (None, p["distribution"])]
    assert len(matches) == 1, listing
    return matches[0]


ACME_CONFIG = """\
admin:
  endpoint: dns:///flyte.acme.invalid:443
  authType: {auth_type}
  authorizationHeader: flyte-authorization
  acmeTenant: tenant-7
"""


# -- a provider from a separate distribution ----------------------------------------------------------
def test_third_party_provider_resolves_from_yaml_by_name_and_alias_case_insensitively(site: Path) -> None:
    variants = ["acme", "ACME", "Acme", "acme-corp", "ACME-Corp"]
    for variant in variants:
        (site.parent / f"{variant}.yaml").write_text(ACME_CONFIG.format(auth_type=variant))
    result = run_py(
        f"""
        for variant in {variants!r}:
            session = AuthSession(load_config(variant + ".yaml"))
            token = session.get_token()
            out[variant] = [session.auth_type, token.access_token, list(token.scopes), token.authorization]
            session.close()
        out["registration"] = default_registry().authenticator("acme").distribution
        out["plugins"] = listing(default_registry())
        """,
        site,
    )
    for variant in variants:
        # the plugin saw its own config key (options = raw admin section) and its token was sent as is
        assert result[variant] == ["Acme", "acme-fixed-token", ["tenant:tenant-7"], "Bearer acme-fixed-token"]
    assert result["registration"] == "acme-flyteauth"

    plugins = result["plugins"]
    acme = by_name(plugins, "acme")
    assert (acme["distribution"], acme["version"], acme["module"]) == ("acme-flyteauth", "1.2.3", "acme_flyteauth")
    assert acme["registered"] == ["authenticator Acme (acme-corp)"]
    assert acme["error"] is None and not acme["blocked"]

    broken = by_name(plugins, "broken")
    assert (broken["distribution"], broken["version"]) == ("broken-flyteauth", "0.0.1")
    assert broken["error"] == "ImportError: broken-flyteauth needs libbroken>=2"
    assert broken["registered"] == []
    missing = by_name(plugins, "missing")
    assert missing["error"].startswith("ModuleNotFoundError")
    assert "broken_flyteauth_not_shipped" in missing["error"]

    # the built-ins are listed beside the third-party ones, attributed to our distribution
    builtin = by_name(plugins, "client_credentials")
    assert builtin["distribution"] == "flyteauth"
    assert builtin["registered"] == ["authenticator ClientSecret (client_credentials, basic)"]


def _blocks(text: str) -> dict[str, list[str]]:
    """``flyteauth plugins`` output: one unindented line per plugin, indented detail lines below it."""
    blocks: dict[str, list[str]] = {}
    current: list[str] = []
    for line in text.splitlines():
        if line and not line[0].isspace():
            current = [line]
            blocks[line.split()[0]] = current
        elif line.strip():
            current.append(line.strip())
    return blocks


@pytest.mark.skipif(not CONSOLE_SCRIPT.exists(), reason="the flyteauth console script is not installed")
def test_flyteauth_plugins_command_lists_broken_and_good_plugins(site: Path) -> None:
    proc = subprocess.run([str(CONSOLE_SCRIPT), "plugins"], env=_env(site), cwd=site.parent,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    blocks = _blocks(proc.stdout)

    acme = blocks["acme"]
    assert "acme-flyteauth 1.2.3" in acme[0]
    assert "FAILED" not in acme[0]
    assert any("authenticator Acme (acme-corp)" in line for line in acme[1:])

    broken = blocks["broken"]
    assert "broken-flyteauth 0.0.1" in broken[0]
    assert "FAILED" in broken[0]
    assert any("ImportError: broken-flyteauth needs libbroken>=2" in line for line in broken[1:])
    assert "ModuleNotFoundError" in " ".join(blocks["missing"])

    # the installed version, whatever release this is (a hard-coded number broke with every release)
    assert f"flyteauth {importlib_metadata.version('flyteauth')}" in blocks["client_credentials"][0]


# -- conflicts ------------------------------------------------------------------------------------------
def test_two_distributions_claiming_one_name_conflict_only_on_that_name(site: Path) -> None:
    # same entry point name as acme-flyteauth too: a fork that was renamed on PyPI but not inside
    make_dist(site, "acme-fork-flyteauth", "9.0.0", {"acme": "acme_fork_flyteauth"}, ("acme_fork_flyteauth",))
    code = """
        registry = PluginRegistry()
        for name in ("Acme", "acme", "acme-corp", "AcmeFork", "acme-fork", "ClientSecret"):
            try:
                out[name] = registry.authenticator(name).distribution
            except FlyteAuthError as exc:
                out[name] = error(exc)
        out["plugins"] = listing(registry)
    """
    result = run_py(code, site)
    for name in ("Acme", "acme"):
        assert result[name]["type"] == "PluginConflictError"
        message = result[name]["message"]
        assert "acme-flyteauth" in message and "acme-fork-flyteauth" in message
        # entry point names can be shared (both are "acme" here): the hint must name what tells them apart
        assert f"{BLOCK_ENV}=<distribution name>" in message
    assert result["acme-corp"] == "acme-flyteauth"  # only the original registered this alias
    assert result["AcmeFork"] == result["acme-fork"] == "acme-fork-flyteauth"
    assert result["ClientSecret"] == "flyteauth"
    # both entry points named "acme" are listed, neither hides the other
    assert {p["distribution"] for p in result["plugins"] if p["name"] == "acme"} == {
        "acme-flyteauth", "acme-fork-flyteauth"}

    # the way out the error suggests: block one of them (by distribution, since the entry points share a name)
    blocked = run_py(code, site, **{BLOCK_ENV: "acme-fork-flyteauth"})
    assert blocked["Acme"] == "acme-flyteauth"
    assert blocked["AcmeFork"]["type"] == "UnknownAuthTypeError"
    assert by_name(blocked["plugins"], "acme", "acme-fork-flyteauth")["blocked"] is True


# -- blocking -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("block", ["acme", "ACME", "acme-flyteauth", "Acme_FlyteAuth", "other, acme"])
def test_disable_plugins_env_blocks_a_plugin(site: Path, block: str) -> None:
    (site.parent / "acme.yaml").write_text(ACME_CONFIG.format(auth_type="acme"))
    result = run_py(
        """
        try:
            AuthSession(load_config("acme.yaml")).auth_type  # resolved on first use
            out["session"] = "created"
        except FlyteAuthError as exc:
            out["session"] = error(exc)
        out["plugins"] = listing(default_registry())
        """,
        site,
        **{BLOCK_ENV: block},
    )
    assert result["session"]["type"] == "UnknownAuthTypeError"
    assert "'acme'" in result["session"]["message"]
    assert "ClientSecret" in result["session"]["message"]  # the others still load
    acme = by_name(result["plugins"], "acme")
    assert acme["blocked"] is True
    assert acme["registered"] == [] and acme["error"] is None


@pytest.mark.skipif(not CONSOLE_SCRIPT.exists(), reason="the flyteauth console script is not installed")
def test_flyteauth_plugins_command_shows_blocked(site: Path) -> None:
    proc = subprocess.run([str(CONSOLE_SCRIPT), "plugins"], env=_env(site, **{BLOCK_ENV: "acme"}),
                          cwd=site.parent, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    acme = _blocks(proc.stdout)["acme"]
    assert "blocked" in acme[0]
    assert not any("registers" in line for line in acme[1:])


# -- unknown names and aliases through the default registry (in process) --------------------------------
def test_unknown_auth_type_lists_available_names() -> None:
    config = AuthConfig(endpoint="dns:///flyte.example.com", auth_type="Kerberos")
    with pytest.raises(UnknownAuthTypeError) as info:
        AuthSession(config).get_token()  # resolved on first use: the constructor does no I/O
    assert info.value.name == "Kerberos"
    assert "ClientSecret" in info.value.available
    message = str(info.value)
    assert "'Kerberos'" in message
    assert "available: " in message and "ClientSecret" in message
    assert "flyteauth plugins" in message  # what to do next


def test_unknown_token_store_is_a_typed_error() -> None:
    config = AuthConfig(endpoint="dns:///flyte.example.com", auth_type="ClientSecret", client_id="ci",
                        client_secret="x", store="vault-that-is-not-installed")
    with pytest.raises(UnknownAuthTypeError, match=r"token store .*vault-that-is-not-installed.*memory"):
        AuthSession(config).get_token()


@pytest.mark.parametrize("name", ["ClientSecret", "clientsecret", "CLIENTSECRET", "client_credentials",
                                  "Client_Credentials", "basic", "BASIC"])
def test_client_secret_aliases_resolve_through_our_own_entry_points(name: str) -> None:
    registration = default_registry().authenticator(name)
    assert registration.name == "ClientSecret"
    assert registration.distribution == "flyteauth"
    assert registration.plugin == "client_credentials"
    session = AuthSession(AuthConfig(endpoint="dns:///flyte.example.com", auth_type=name, client_id="ci",
                                     client_secret="x"))
    try:
        assert session.auth_type == "ClientSecret"
    finally:
        session.close()


def test_builtin_store_comes_from_our_distribution() -> None:
    registration = default_registry().token_store("MEMORY")
    assert (registration.name, registration.distribution) == ("memory", "flyteauth")


def test_explicit_entry_points_replace_discovery() -> None:
    """A registry built from given entry points sees only those (the installed built-ins are not added)."""
    registry = PluginRegistry(entry_points=[_ep("fixed", "FIXED_PLUGIN")])
    assert registry.names() == ["Fixed"]
    with pytest.raises(UnknownAuthTypeError, match="available: Fixed"):
        registry.authenticator("ClientSecret")


# -- hooks: in-process, with hand-made entry points pointing at this module ------------------------------
class FixedAuthenticator:
    def __init__(self, config: AuthConfig) -> None:
        self.fail = bool(config.options.get("fail"))

    def acquire(self, request: Any) -> Token:
        if self.fail:
            raise RuntimeError("provider exploded")
        return Token("fixed-token", expires_at=4102444800.0)


class FixedPlugin:
    @hookimpl
    def flyteauth_register_authenticators(self, register: Any) -> None:
        register("Fixed", FixedAuthenticator)


class RaisingRegistration:
    @hookimpl
    def flyteauth_register_authenticators(self, register: Any) -> None:
        raise RuntimeError("cannot register today")


class RecordingEvents:
    def __init__(self) -> None:
        self.events: list[TokenEvent] = []

    @hookimpl
    def flyteauth_token_event(self, event: TokenEvent) -> None:
        self.events.append(event)


class RaisingEvents:
    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def flyteauth_token_event(self, event: TokenEvent) -> None:
        self.calls += 1
        raise RuntimeError("metrics backend down")


FIXED_PLUGIN = FixedPlugin()
RAISING_REGISTRATION = RaisingRegistration()


def _ep(name: str, attribute: str) -> importlib_metadata.EntryPoint:
    return importlib_metadata.EntryPoint(name=name, value=f"{__name__}:{attribute}", group="flyteauth")


def _session(registry: PluginRegistry, **options: Any) -> AuthSession:
    config = AuthConfig(endpoint="dns:///flyte.example.com", auth_type="fixed",
                        authorization_header="authorization", options=options)
    return AuthSession(config, registry=registry, store="none")


def test_registration_hook_that_raises_is_that_plugins_error_only(caplog: pytest.LogCaptureFixture) -> None:
    registry = PluginRegistry(entry_points=[_ep("raising", "RAISING_REGISTRATION"), _ep("fixed", "FIXED_PLUGIN"),
                                            _ep("gone", "NO_SUCH_ATTRIBUTE")])
    with caplog.at_level(logging.WARNING, logger="flyteauth.plugins"):
        assert registry.authenticator("FIXED").factory is FixedAuthenticator
    infos = {p.name: p for p in registry.plugins()}
    assert infos["raising"].error is not None
    assert "flyteauth_register_authenticators" in infos["raising"].error
    assert "RuntimeError: cannot register today" in infos["raising"].error
    assert infos["fixed"].error is None and infos["fixed"].registered == ["authenticator Fixed"]
    assert infos["gone"].error is not None and "AttributeError" in infos["gone"].error
    assert "cannot register today" in caplog.text  # the user is told, not only the listing


def test_token_events_reach_hooks_and_a_raising_hook_does_not_break_the_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    registry = PluginRegistry(entry_points=[_ep("fixed", "FIXED_PLUGIN")])
    recorder, raiser = RecordingEvents(), RaisingEvents()
    registry.register_module(recorder, "recorder")
    registry.register_module(raiser, "raiser")
    session = _session(registry)
    with caplog.at_level(logging.WARNING, logger="flyteauth.plugins"):
        assert session.get_token().access_token == "fixed-token"
        session.manager.rejected(session.manager.metadata())  # the server said no: invalidated
        assert session.get_token().access_token == "fixed-token"
    session.close()
    assert raiser.calls >= 2
    assert "flyteauth_token_event hook (plugin 'raiser') failed" in caplog.text
    # one broken observer must not silence the others (an audit plugin must see every event)
    kinds = [e.kind for e in recorder.events]
    assert kinds == ["acquired", "invalidated", "refreshed"]
    first = recorder.events[0]
    assert (first.auth_type, first.endpoint, first.expires_at) == ("Fixed", "dns:///flyte.example.com", 4102444800.0)
    assert recorder.events[1].reason == "rejected by server"


def test_failed_acquire_is_an_event_and_the_error_reaches_the_caller() -> None:
    registry = PluginRegistry(entry_points=[_ep("fixed", "FIXED_PLUGIN")])
    recorder = RecordingEvents()
    registry.register_module(recorder, "recorder")
    session = _session(registry, fail=True)
    with pytest.raises(RuntimeError, match="provider exploded"):
        session.get_token()
    session.close()
    assert [e.kind for e in recorder.events] == ["failed"]
    assert recorder.events[0].error is not None and "RuntimeError" in recorder.events[0].error


def test_register_module_lists_local_plugins() -> None:
    registry = PluginRegistry(entry_points=[])
    registry.register_module(FixedPlugin(), "in-app")
    assert registry.authenticator("fixed").plugin == "in-app"
    (info,) = registry.plugins()
    assert (info.name, info.distribution, info.registered) == ("in-app", "local", ["authenticator Fixed"])


# -- lookups load only what they need (issue 19) ---------------------------------------------------------
def test_builtin_table_matches_what_the_builtin_modules_register() -> None:
    """BUILTIN_PROVIDES is what a lookup trusts to import one module instead of all of them: it must list
    exactly the names, aliases and option keys each built-in module registers, and no built-in may observe
    events (event delivery loads only third-party plugins) or read an option from an unusual variable."""
    from flyteauth_core.config import OUR_PREFIX
    from flyteauth_core.plugins import BUILTIN_PROVIDES

    registry = PluginRegistry()
    actual: dict[str, dict[str, set[str]]] = {}
    for reg in registry.registrations():
        module = next(p.module for key, p in registry._plugins.items() if key == reg.plugin)
        if module not in BUILTIN_PROVIDES and not module.startswith("flyteauth_providers"):
            continue
        kinds = actual.setdefault(module, {})
        kinds.setdefault(reg.kind, set()).update(n.lower() for n in (reg.name, *reg.aliases))
        for option in reg.options:
            kinds.setdefault("option", set()).add(option.key.lower())
            var = option.env_var or ""  # config finds the plugins reading $FLYTEAUTH_<KEY> by this spelling
            assert var.startswith(OUR_PREFIX) and var[len(OUR_PREFIX):].replace("_", "").lower() == option.key.lower()
    assert actual == {m: {k: set(v) for k, v in kinds.items()} for m, kinds in BUILTIN_PROVIDES.items()}
    observers = {key for key in registry._call_order("flyteauth_token_event")}
    assert not observers & {key for key, p in registry._plugins.items() if p.module in BUILTIN_PROVIDES}


def test_a_lookup_loads_the_third_party_plugins_and_one_builtin_module(site: Path) -> None:
    out = run_py(
        """
        import sys
        registry = PluginRegistry()
        registration = registry.authenticator("client_credentials")
        out["resolved"] = [registration.name, registration.distribution]
        out["token_store"] = registry.token_store("file").name
        out["loaded"] = sorted(m for m in sys.modules if m.startswith(("flyteauth_providers.", "acme")))
        out["metadata_imported"] = "importlib.metadata" in sys.modules
        out["names"] = registry.names()  # a listing loads everything
        """,
        site,
    )
    assert out["resolved"] == ["ClientSecret", "flyteauth"]
    assert out["token_store"] == "file"
    assert {"acme_flyteauth", "flyteauth_providers.client_credentials", "flyteauth_providers.file_store"} <= set(
        out["loaded"])
    assert not {"flyteauth_providers.pkce", "flyteauth_providers.device_flow", "flyteauth_providers.redis_store",
                "flyteauth_providers.keyring_store"} & set(out["loaded"])
    assert out["metadata_imported"] is False
    assert {"Acme", "ClientSecret", "Pkce", "DeviceFlow"} <= set(out["names"])


def test_entry_points_read_without_importlib_metadata_match_it(site: Path, tmp_path: Path) -> None:
    """The light reader gives importlib.metadata's answer (order, first distribution of a name wins), and
    hands over to importlib.metadata when a zip is on sys.path."""
    shadow = tmp_path / "shadow"
    make_dist(shadow, "acme-flyteauth", "9.9.9", {"shadowed": "acme_flyteauth"}, ())
    out = run_py(
        f"""
        import sys, zipfile
        from importlib import metadata
        from flyteauth_core import _entry_points
        sys.path.append({str(shadow)!r})  # a second acme-flyteauth, later on the path: not listed
        def rows(eps):
            return [[e.name, e.value, e.dist.metadata.get("Name"), e.dist.version] for e in eps]
        out["light"] = rows(_entry_points._scan("flyteauth"))
        out["stdlib"] = rows(metadata.entry_points(group="flyteauth"))
        out["standard"] = _entry_points._standard_layout()
        zipped = {str(tmp_path / "extra.zip")!r}
        zipfile.ZipFile(zipped, "w").close()
        sys.path.append(zipped)
        out["with_zip"] = _entry_points._standard_layout()
        """,
        site,
    )
    assert out["light"] == out["stdlib"]
    assert ["acme", "acme_flyteauth", "acme-flyteauth", "1.2.3"] in out["light"]
    assert not any(row[0] == "shadowed" for row in out["light"])
    assert out["standard"] is True and out["with_zip"] is False
