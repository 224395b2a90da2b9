"""``import flyteauth_core`` stays light: heavy dependencies and providers load on first use.

Each check runs ``python -X importtime`` in a fresh interpreter and reads the list of modules it imported.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

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
