"""``import flyteauth_core`` stays light: heavy dependencies and providers load on first use.

Each check runs ``python -X importtime`` in a fresh interpreter and reads the list of modules it imported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flyteauth_core.testing import ECHO, DemoTokenEndpoint, FlyteTestServer

HEAVY = ("authlib", "httpx2", "httpcore2", "yaml", "grpc", "google.protobuf", "flyteauth_providers")


def imported_by(code: str) -> set[str]:
    """Modules imported by ``code``: from ``-X importtime`` and, since importtime does not report modules
    loaded through ``importlib.import_module`` (entry points, lazy attributes), from ``sys.modules``."""
    script = f"{code}\nimport json as _j, sys as _s\nprint(_j.dumps(sorted(_s.modules)))"
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    modules = set(json.loads(proc.stdout.splitlines()[-1]))
    assert "flyteauth_core.hookspecs" in modules
    timed = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name != "imported package":
                timed.add(name)
    assert "flyteauth_core" in timed, proc.stderr  # the parse works: the assertions below mean something
    return modules | timed


def heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)}


def test_importtime_parse_sees_what_is_imported() -> None:
    modules = imported_by("import flyteauth_core, yaml; import importlib; importlib.import_module('grpc')")
    assert {"yaml", "grpc"} <= modules
    assert heavy(modules) >= {"yaml", "grpc"}


@pytest.mark.parametrize(
    "code",
    [
        "import flyteauth_core",
        "from flyteauth_core import AuthConfig, Token, load_config, hookimpl, TokenEvent",
        # the facade itself: grpc is needed only once a channel or discovery is used
        "from flyteauth_core import AuthSession",
        "import flyteauth_core.session, flyteauth_core.plugins, flyteauth_core.lifecycle",
        "from flyteauth_core import AuthConfig, AuthSession; AuthConfig(endpoint='dns:///flyte.example.com')",
    ],
)
def test_core_imports_nothing_heavy(code: str) -> None:
    modules = imported_by(code)
    assert "flyteauth_core" in modules
    assert heavy(modules) == set()


def test_listing_plugins_does_not_import_grpc_or_network_libraries() -> None:
    """Loading the registry imports the provider modules, but their heavy imports stay lazy."""
    modules = imported_by(
        "from flyteauth_core.plugins import PluginRegistry; PluginRegistry().authenticator('ClientSecret')"
    )
    assert "flyteauth_providers.client_credentials" in modules
    assert {m for m in heavy(modules) if not m.startswith("flyteauth_providers")} == set()
    assert "http.server" not in modules  # the PKCE callback server loads only when a login runs


# -- a first authenticated call imports only what it needs (issue 19) --------------------------------------
#: What a first call with a stored token must not import: an HTTP client, an OAuth library, the machinery
#: of importlib.metadata, PyYAML (a plain config), protobuf (discovery comes from the store); and the built-in
#: providers the config does not name.
NOT_WHEN_STORED = ("httpx2", "httpcore2", "authlib", "importlib.metadata", "google.protobuf", "yaml",
                   "flyteauth_providers.pkce", "flyteauth_providers.device_flow", "flyteauth_providers.redis_store",
                   "flyteauth_providers.keyring_store", "flyteauth_providers.token_exchange",
                   "flyteauth_providers.passthrough", "flyteauth_providers.platform_sources")
FIRST_CALL = """
import json, sys
from flyteauth_core import AuthSession, load_config
session = AuthSession(load_config(sys.argv[1]))
assert session.channel().unary_unary(sys.argv[2])(b"x", timeout=30) == b"x"
print(json.dumps({"token_requests": session.stats.token_requests, "modules": sorted(sys.modules)}))
session.close()
"""


def _first_call(config: Path) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLYTEAUTH_", "FLYTECTL_", "UCTL_"))}
    env["FLYTEAUTH_INTERACTIVE"] = "0"
    proc = subprocess.run([sys.executable, "-c", FIRST_CALL, str(config), ECHO["unary"]], capture_output=True,
                          text=True, timeout=60, check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.splitlines()[-1])  # type: ignore[no-any-return]


def loaded(modules: list[str], names: tuple[str, ...]) -> set[str]:
    return {n for n in names if any(m == n or m.startswith(n + ".") for m in modules)}


def test_first_call_with_a_stored_token_loads_no_http_client_oauth_library_or_unnamed_provider(
        tmp_path: Path) -> None:
    with DemoTokenEndpoint("client", "s3cret", ttl=3600) as idp, \
            FlyteTestServer(idp.validate, token_endpoint=idp.url) as server:
        secret = tmp_path / "secret"
        secret.write_text("s3cret\n")
        config = tmp_path / "config.yaml"
        config.write_text(f"admin:\n  endpoint: {server.target}\n  insecure: true\n  authType: ClientSecret\n"
                          f"  clientId: client\n  clientSecretLocation: {secret}\n  tokenStore: file\n"
                          f"  tokenStorePath: {tmp_path / 'tokens'}\n")
        fetched = _first_call(config)  # discovery + one token request, both saved in the file store
        assert fetched["token_requests"] == 1
        assert loaded(fetched["modules"], ("httpx2",)) == {"httpx2"}  # the token request needs the client...
        # ...but client_secret_basic no OAuth library, and discovery no protobuf
        assert loaded(fetched["modules"], ("authlib", "google.protobuf")) == set()
        stored = _first_call(config)
        assert stored["token_requests"] == 0 and idp.requests == 1
        assert loaded(stored["modules"], NOT_WHEN_STORED) == set()
        assert {"flyteauth_providers.client_credentials", "flyteauth_providers.file_store"} <= set(stored["modules"])
