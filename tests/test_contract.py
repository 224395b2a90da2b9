"""The plugin contract: registration metadata, declared options, replace=True, malformed registrations,
pluggy ordering, and the value types plugins see."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any

import pytest

from flyteauth_core import AuthConfig, AuthSession, Token, hookimpl
from flyteauth_core import cli as cli_module
from flyteauth_core import plugins as plugins_module
from flyteauth_core.config import load_config
from flyteauth_core.errors import ConfigError, FlyteAuthError, PluginConflictError, PluginError
from flyteauth_core.events import TokenEvent
from flyteauth_core.options import Option, Source
from flyteauth_core.parsers import boolean, duration
from flyteauth_core.plugins import PluginRegistry
from flyteauth_core.types import AcquireReason, AcquireRequest

ENDPOINT = "dns:///flyte.example.invalid:443"


class Fixed:
    def __init__(self, config: AuthConfig) -> None:
        self.config = config

    def acquire(self, request: AcquireRequest) -> Token:
        return Token("fixed", expires_at=4102444800.0)


class Store:
    def __init__(self, config: AuthConfig) -> None:
        self.data: dict[str, Token] = {}

    def load(self, key: str) -> Token | None:
        return self.data.get(key)

    def save(self, key: str, token: Token) -> None:
        self.data[key] = token

    def delete(self, key: str) -> None:
        self.data.pop(key, None)


ACME_URL = Option("acmeURL", secret=True, help="where Acme lives")
ACME_TTL = Option("acmeLockTTL", parse=duration, default=30.0)
ACME_STRICT = Option("acmeStrict", parse=boolean, default=False)


class AcmePlugin:
    @hookimpl
    def flyteauth_register_authenticators(self, register: Any) -> None:
        register("Acme", Fixed, aliases=("acme-corp",), default_store="acme-store", options=(ACME_URL, ACME_STRICT))

    @hookimpl
    def flyteauth_register_token_stores(self, register: Any) -> None:
        register("acme-store", Store, options=(ACME_TTL,))


def registry_with(*plugins: tuple[str, object], builtins: bool = False) -> PluginRegistry:
    registry = PluginRegistry() if builtins else PluginRegistry(entry_points=[])
    for key, plugin in plugins:
        registry.register_module(plugin, key)
    return registry


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# -- registration metadata -------------------------------------------------------------------------------
def test_default_store_and_options_come_from_registration() -> None:
    registry = registry_with(("acme", AcmePlugin()))
    reg = registry.authenticator("ACME-CORP")
    assert (reg.name, reg.default_store, reg.anonymous) == ("Acme", "acme-store", False)
    assert [o.key for o in reg.options] == ["acmeURL", "acmeStrict"]
    session = AuthSession(AuthConfig(endpoint=ENDPOINT, auth_type="acme", authorization_header="authorization"),
                          registry=registry)
    assert isinstance(session.store, Store)  # the declared default store, without a tokenStore key
    assert session.get_token().access_token == "fixed"
    session.close()


def test_old_register_call_form_and_class_attributes_still_work() -> None:
    class Legacy(Fixed):
        default_token_store = "memory-ish"
        anonymous = True

    class OldPlugin:
        @hookimpl
        def flyteauth_register_authenticators(self, register: Any) -> None:
            register("Legacy", Legacy, ("old",))  # 0.1.0: positional aliases

    reg = registry_with(("old", OldPlugin())).authenticator("old")
    assert (reg.name, reg.aliases, reg.default_store, reg.anonymous) == ("Legacy", ("old",), "memory-ish", True)


def test_builtin_noauth_is_anonymous_and_interactive_providers_want_the_keyring() -> None:
    registry = PluginRegistry()
    assert registry.authenticator("NoAuth").anonymous
    assert registry.authenticator("Pkce").default_store == "keyring"
    assert registry.authenticator("DeviceFlow").default_store == "keyring"
    assert registry.authenticator("ClientSecret").default_store is None


class Malformed:
    def __init__(self, call: Any) -> None:
        self.call = call

    @hookimpl
    def flyteauth_register_authenticators(self, register: Any) -> None:
        register("Fine", Fixed)
        self.call(register)


class NotAnAuthenticator:
    def __init__(self, config: AuthConfig) -> None: ...


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: r("Bad", Fixed, aliases="bad"), "aliases must be a tuple of names, got the string 'bad'"),
        (lambda r: r("Bad", Fixed, default_stroe="keyring"), "unknown argument(s) default_stroe"),
        (lambda r: r("Bad", "not callable"), "the factory must be callable"),
        (lambda r: r("Bad", NotAnAuthenticator), "NotAnAuthenticator has no acquire method"),
        (lambda r: r("Bad", Fixed, replace="yes"), "replace must be True or False"),
        (lambda r: r("Bad", Fixed, options=(42,)), "options must be flyteauth_core.options.Option"),
        (lambda r: r("Bad", Fixed, default_store=""), "default_store must be a token store name"),
    ],
)
def test_malformed_registration_is_a_clear_error_at_load(call: Any, message: str,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="flyteauth.plugins"):
        registry = registry_with(("sloppy", Malformed(call)))
    (info,) = registry.plugins()
    assert info.error is not None and message in info.error, info.error
    assert message in caplog.text
    assert registry.authenticator("Fine").factory is Fixed  # what was well-formed still registered
    with pytest.raises(PluginError, match=r"The authenticator 'Bad' failed to register: plugin 'sloppy'"):
        registry.authenticator("bad")


def test_store_only_metadata_is_rejected_for_stores() -> None:
    class StorePlugin:
        @hookimpl
        def flyteauth_register_token_stores(self, register: Any) -> None:
            register("s", Store, anonymous=True)

    (info,) = registry_with(("s", StorePlugin())).plugins()
    assert info.error is not None and "anonymous" in info.error and "only for authenticators" in info.error


def run_cli(monkeypatch: pytest.MonkeyPatch, registry: PluginRegistry, *argv: str) -> str:
    monkeypatch.setattr(plugins_module, "_default", registry)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli_module.main(list(argv)) == 0
    return out.getvalue()


def test_flyteauth_plugins_shows_a_malformed_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = registry_with(("sloppy", Malformed(lambda r: r("Bad", Fixed, aliases="bad"))))
    out = run_cli(monkeypatch, registry, "plugins")
    assert "sloppy  [FAILED]" in out and "aliases must be a tuple of names" in out


# -- replace=True ------------------------------------------------------------------------------------------
class Takeover:
    def __init__(self, replace: bool) -> None:
        self.replace = replace

    @hookimpl
    def flyteauth_register_authenticators(self, register: Any) -> None:
        register("ClientSecret", Fixed, replace=self.replace)


def test_overriding_a_builtin_name_needs_replace_true(monkeypatch: pytest.MonkeyPatch) -> None:
    quiet = registry_with(("corp", Takeover(replace=False)), builtins=True)
    with pytest.raises(PluginConflictError, match="replace=True"):
        quiet.authenticator("ClientSecret")
    explicit = registry_with(("corp", Takeover(replace=True)), builtins=True)
    assert explicit.authenticator("client_credentials").factory is Fixed  # the built-in's alias too
    out = run_cli(monkeypatch, explicit, "plugins")
    assert "authenticator ClientSecret replaces 'ClientSecret' from flyteauth" in out
    two = registry_with(("corp", Takeover(replace=True)), ("other", Takeover(replace=True)), builtins=True)
    with pytest.raises(PluginConflictError):
        two.authenticator("ClientSecret")


# -- hooks go through pluggy: tryfirst / trylast ------------------------------------------------------------
class Header:
    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, config: AuthConfig) -> Header:
        return self

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return ((self.key, "1"),)

    async def metadata_async(self) -> tuple[tuple[str, str], ...]:
        return self.metadata()

    def rejected(self, sent: Any) -> bool:
        return False


def _interceptor_plugin(key: str, **order: bool) -> object:
    class P:
        @hookimpl(**order)
        def flyteauth_register_interceptors(self, register: Any) -> None:
            register(key, Header(f"x-{key}"))

        @hookimpl(**order)
        def flyteauth_token_event(self, event: TokenEvent) -> None:
            seen.append(key)

    return P()


seen: list[str] = []


def test_tryfirst_and_trylast_order_interceptors_and_event_hooks() -> None:
    registry = registry_with(("late", _interceptor_plugin("late", trylast=True)), ("fixed", AcmePlugin()),
                             ("plain", _interceptor_plugin("plain")),
                             ("early", _interceptor_plugin("early", tryfirst=True)))
    assert [r.name for r in registry.interceptors()] == ["early", "plain", "late"]
    session = AuthSession(AuthConfig(endpoint=ENDPOINT, auth_type="Acme", authorization_header="authorization"),
                          registry=registry, store="none")
    keys = [k for k, _ in session.interceptor.metadata()]
    assert keys == ["authorization", "x-early", "x-plain", "x-late"]
    seen.clear()
    registry.emit(TokenEvent(kind="acquired", auth_type="Acme", endpoint=ENDPOINT))
    assert seen == ["early", "plain", "late"]
    session.close()


# -- declared options ---------------------------------------------------------------------------------------
def test_declared_options_are_not_unknown_and_are_validated(tmp_path: Path) -> None:
    registry = registry_with(("acme", AcmePlugin()))
    path = write(tmp_path, f"""\
admin:
  endpoint: {ENDPOINT}
  acmeStrict: perhaps
  acmeLockTTl: 5m
flyteauth:
  authType: Acme
  acmeURL: https://user:pw@acme.invalid
  acmeLockTTL: 5m
""")
    config = load_config(path, env={}, registry=registry)
    text = "\n".join(config.problems)
    assert "acmeURL" not in text and "unknown key 'acmeLockTTL'" not in text
    assert "admin.acmeStrict in" in text and "must be a boolean" in text and "read by authenticator Acme" in text
    assert "unknown key 'acmeLockTTl'" in text and "did you mean 'acmeLockTTL'?" in text
    assert ACME_TTL.read(config) == 300.0
    assert config.source("options.acmeLockTTL") == Source("flyteauth.acmeLockTTL", str(path))
    with pytest.raises(ConfigError, match=r"admin\.acmeStrict in .*config\.yaml must be a boolean"):
        ACME_STRICT.read(config)


def test_declared_option_from_its_flyteauth_env_var_and_default(tmp_path: Path) -> None:
    registry = registry_with(("acme", AcmePlugin()))
    config = load_config(None, env={"FLYTEAUTH_ENDPOINT": ENDPOINT, "FLYTEAUTH_ACME_LOCK_TTL": "90s"},
                         registry=registry)
    assert ACME_TTL.read(config) == 90.0 and ACME_STRICT.read(config) is False
    assert config.source("options.acmeLockTTL").key == "$FLYTEAUTH_ACME_LOCK_TTL"
    assert Option("redisURL").env_var == "FLYTEAUTH_REDIS_URL"
    assert Option("platformTokenFile").env_var == "FLYTEAUTH_PLATFORM_TOKEN_FILE"
    assert Option("x", env="").env_var is None


def test_builtin_file_store_keys_are_declared(tmp_path: Path) -> None:
    path = write(tmp_path, f"admin:\n  endpoint: {ENDPOINT}\n  tokenStorePath: /tmp/x\n  tokenStoreLockTimeout: 1m\n")
    assert not [p for p in load_config(path, env={}).problems if "unknown" in p]


def test_bad_option_declaration_is_rejected() -> None:
    with pytest.raises(ConfigError, match="YAML key"):
        Option("has space")


# -- value types -------------------------------------------------------------------------------------------
def test_acquire_reason_is_an_enum_that_still_equals_its_string() -> None:
    request = AcquireRequest(config=AuthConfig(endpoint=ENDPOINT), reason="login")
    assert request.reason is AcquireReason.LOGIN and request.reason == "login" and f"{request.reason}" == "login"
    with pytest.raises(FlyteAuthError, match="Unknown acquire reason 'bogus'"):
        AcquireRequest(config=AuthConfig(endpoint=ENDPOINT), reason="bogus")
    with pytest.raises(FlyteAuthError, match="acquire_request"):
        AcquireRequest(config=AuthConfig(endpoint=ENDPOINT)).http_client()


def test_value_types_are_one_object_wherever_imported() -> None:
    from flyteauth_core import http, lifecycle, protocols, types

    assert http.RetryPolicy is types.RetryPolicy and lifecycle.AcquireRequest is types.AcquireRequest
    assert protocols.Metadata is types.Metadata and types.Token is Token


def test_an_option_clashing_with_our_own_keys_is_reported() -> None:
    class Clashing:
        @hookimpl
        def flyteauth_register_authenticators(self, register: Any) -> None:
            register("Clash", Fixed, options=(Option("clientId"), Option("passthroughToken", env="FLYTEAUTH_TOKEN")))

    config = load_config(None, env={"FLYTEAUTH_ENDPOINT": ENDPOINT}, registry=registry_with(("clash", Clashing())),
                         options={"passthroughToken": "x"})  # a plugin's key in use: the plugins are consulted
    text = "\n".join(config.problems)
    assert "clashes with the flyteauth key 'clientId'" in text and "clashes with $FLYTEAUTH_TOKEN" in text


def test_a_plain_config_does_not_load_the_plugins(tmp_path: Path) -> None:
    class Exploding(PluginRegistry):
        def declared_options(self) -> Any:
            raise AssertionError("the registry was consulted")

    path = write(tmp_path, f"admin:\n  endpoint: {ENDPOINT}\n  clientId: c\n  maxMessageSizeBytes: 1\n")
    config = load_config(path, env={"FLYTEAUTH_CONFIG": str(path), "FLYTEAUTH_CLIENT_ID": "d"},
                         registry=Exploding(entry_points=[]))
    assert config.client_id == "d"


def test_describe_options_masks_declared_secrets(tmp_path: Path) -> None:
    from flyteauth_core.config import describe_options

    registry = registry_with(("acme", AcmePlugin()))
    path = write(tmp_path, f"admin:\n  endpoint: {ENDPOINT}\n"
                           "flyteauth:\n  acmeURL: https://u:pw@x\n  acmeLockTTL: 1m\n")
    rows = {key: (value, source) for key, value, source in
            describe_options(load_config(path, env={}, registry=registry), registry)}
    assert rows["acmeURL"] == ("****", f"{path}:flyteauth.acmeURL")
    assert rows["acmeLockTTL"][0] == "'1m'"
