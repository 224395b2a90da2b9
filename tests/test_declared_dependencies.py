"""What flyteauth imports, pyproject.toml declares (issue 16 item 8).

0.2.0 imported ``joserfc`` (private_key_jwt keys) without declaring it, and its authlib floor (1.6) had no
joserfc at all: at the floor, private_key_jwt was a raw ``ModuleNotFoundError``.  These tests read the real
``pyproject.toml`` and the real source tree.
"""

from __future__ import annotations

import ast
import importlib.metadata
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")
from packaging.requirements import Requirement  # noqa: E402
from packaging.version import Version  # noqa: E402

from flyteauth_core import AuthConfig, AuthSession  # noqa: E402
from flyteauth_core.errors import ConfigError  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OURS = ("flyteauth_core", "flyteauth_providers", "flyteauth_integrations")
#: Imported but deliberately not declared, and why.
NOT_OURS = {
    "certifi": "a guarded import (ImportError is handled); httpx2 depends on it",
    "flyte": "flyteauth_integrations.flyte runs inside flyte 2.x, which the user already has",
}


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def _requirements(extras: bool) -> dict[str, Requirement]:
    project = _project()
    lines = list(project["dependencies"])
    if extras:
        lines += [line for name, group in project["optional-dependencies"].items()
                  if name not in ("test", "dev") for line in group]
    found = {}
    for line in lines:
        requirement = Requirement(line)
        found[requirement.name.lower()] = requirement
    return found


def _imported_modules() -> dict[str, str]:
    """Top-level third-party modules imported by flyteauth's packages -> one file importing each."""
    out: dict[str, str] = {}
    for package in OURS:
        for file in (ROOT / package).rglob("*.py"):
            if "_proto" in file.parts:
                continue
            for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
                names: list[str] = []
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in OURS and top != "__future__":
                        out.setdefault(top, str(file.relative_to(ROOT)))
    return out


def test_every_third_party_module_flyteauth_imports_is_declared() -> None:
    declared = _requirements(extras=True)
    distributions = importlib.metadata.packages_distributions()
    undeclared = []
    for module, where in sorted(_imported_modules().items()):
        if module in NOT_OURS:
            continue
        owners = {d.lower() for d in distributions.get(module, [])}
        if not owners & set(declared):
            undeclared.append(f"{module} (imported by {where}; provided by {sorted(owners) or 'nothing installed'})")
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def test_joserfc_is_a_core_dependency_and_the_authlib_floor_has_what_private_key_jwt_needs() -> None:
    from flyteauth_providers._oauth import AUTHLIB_FOR_PRIVATE_KEY_JWT

    core = _requirements(extras=False)
    assert "joserfc" in core, "private_key_jwt imports joserfc in the base install"
    floor = next(Version(s.version) for s in core["authlib"].specifier if s.operator == ">=")
    assert floor.release[:3] >= AUTHLIB_FOR_PRIVATE_KEY_JWT
    installed = importlib.metadata.version("authlib")
    assert core["authlib"].specifier.contains(installed, prereleases=True)
    # authlib's own metadata at the floor's line requires joserfc too (what the installed one says)
    assert any(r.lower().startswith("joserfc") for r in importlib.metadata.requires("authlib") or [])


def _key_config(tmp_path: Path) -> AuthConfig:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    key = tmp_path / "client.pem"
    key.write_bytes(pem)
    return AuthConfig(endpoint="dns:///flyte.example.com", auth_type="ClientSecret", client_id="ci",
                      token_endpoint_auth_method="private_key_jwt", client_key_file_path=str(key),
                      token_url="https://idp.example.com/token")


def test_private_key_jwt_without_joserfc_is_a_config_error_naming_the_fix(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "joserfc.jwk", None)  # the exact fault: the package is not importable
    with pytest.raises(ConfigError) as raised, AuthSession(_key_config(tmp_path), store="memory") as session:
        session.get_token()
    assert "joserfc" in raised.value.message and "pip install" in (raised.value.hint or "")


def test_private_key_jwt_with_an_authlib_below_the_floor_is_a_config_error(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "1.6.5" if name == "authlib" else real(name))
    with pytest.raises(ConfigError) as raised, AuthSession(_key_config(tmp_path), store="memory") as session:
        session.get_token()
    assert "authlib >= 1.7.2" in raised.value.message and "1.6.5" in raised.value.message
