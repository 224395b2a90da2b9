"""``flyteauth token`` as ExternalCommand clients run it: real processes, the real test IdP, a shared cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from flyteauth_core.commands.token import is_helper_command
from flyteauth_core.testing import FlyteTestServer

from ._idp import CI_BASIC, IdpServer
from ._leakscan import register_secret

pytestmark = pytest.mark.idp

REPO = Path(__file__).resolve().parent.parent
Run = Callable[..., subprocess.CompletedProcess[str]]


def helper_env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: our token directory, a HOME without configs, no stray FLYTE_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLYTE", "UCTL_"))}
    env.update(FLYTEAUTH_TOKEN_DIR=str(tmp_path / "tokens"), HOME=str(tmp_path), FLYTEAUTH_INTERACTIVE="0",
               PYTHONPATH=str(REPO))
    return env


def write_config(tmp_path: Path, token_url: str, *, secret: str = CI_BASIC[1], body: str | None = None) -> Path:
    (tmp_path / "secret").write_text(secret + "\n")
    (tmp_path / "secret").chmod(0o600)  # a real secret file; 0644 would be warned about (as it should)
    config = tmp_path / "config.yaml"
    config.write_text(body if body is not None else (
        "admin:\n  endpoint: dns:///127.0.0.1:9\n  insecure: true\n  authType: ClientSecret\n"
        f"  clientId: {CI_BASIC[0]}\n  clientSecretLocation: {tmp_path / 'secret'}\n"
        f"  tokenUrl: {token_url}\n  authorizationHeader: authorization\n"))
    return config


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "flyteauth_core.cli", "token", *args]


@pytest.fixture
def run(tmp_path: Path) -> Run:
    env = helper_env(tmp_path)

    def go(*args: str, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(command(*args), capture_output=True, text=True, timeout=60, check=False,
                                env={**env, **(extra_env or {})}, cwd=tmp_path)
        if result.returncode == 0:
            register_secret(result.stdout.strip(), "flyteauth token stdout")
        return result

    return go


def test_sixteen_cold_processes_make_one_idp_request(idp_factory: Callable[..., IdpServer], tmp_path: Path) -> None:
    idp = idp_factory(token_ttl=60)  # long enough that all 16 start while the first token is fresh
    config = write_config(tmp_path, idp.token_endpoint)
    env = helper_env(tmp_path)
    procs = [subprocess.Popen(command("--config", str(config)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env, cwd=tmp_path) for _ in range(16)]
    outputs = [proc.communicate(timeout=90) for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 16, [err for _, err in outputs]
    tokens = {out for out, _ in outputs}
    assert len(tokens) == 1 and next(iter(tokens)).count("\n") == 1  # stdout: the token, nothing else
    register_secret(next(iter(tokens)).strip())
    assert idp.token_request_count(CI_BASIC[0]) == 1


def test_warm_call_answers_from_the_cache_without_heavy_imports(idp_factory: Callable[..., IdpServer],
                                                                tmp_path: Path, run: Run) -> None:
    # 2-minute tokens: with the session IdP's 2 s tokens, a loaded machine let the cached one expire between the
    # two calls, and the warm call then (rightly) fetched a new one.
    idp_fresh = idp_factory(token_ttl=120)
    config = write_config(tmp_path, idp_fresh.token_endpoint)
    first = run("--config", str(config), "--min-valid", "0")
    assert first.returncode == 0, first.stderr
    # The same thing in-process, reporting what got imported: a cached token needs none of the heavy stack.
    code = ("import sys, json; from flyteauth_core.cli import main; rc = main(['token', '--config', "
            f"{str(config)!r}, '--min-valid', '0']); heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('authlib', 'httpx2', 'httpcore2', 'grpc', 'google', 'yaml', 'keyring')); "
            "print(json.dumps([rc, heavy]), file=sys.stderr)")
    warm = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False,
                          env=helper_env(tmp_path), cwd=tmp_path)
    rc, heavy = json.loads(warm.stderr.strip().splitlines()[-1])
    assert (rc, heavy) == (0, [])
    assert warm.stdout == first.stdout
    assert idp_fresh.token_request_count(CI_BASIC[0]) == 1
    cached = list((tmp_path / "tokens" / "helper").glob("*.json"))
    assert len(cached) == 1 and cached[0].stat().st_mode & 0o777 == 0o600
    record = json.loads(cached[0].read_text())
    assert record["token"]["refresh_token"] is None  # the cache holds only the access token


def test_min_valid_is_capped_at_half_the_lifetime_and_json_output(idp_factory: Callable[..., IdpServer],
                                                                   tmp_path: Path, run: Run) -> None:
    """6 s tokens: the default --min-valid 60 would make every call a refresh; capped at 3 s it does not."""
    idp = idp_factory(token_ttl=6)
    config = write_config(tmp_path, idp.token_endpoint)
    first = run("--config", str(config), "--json")
    assert first.returncode == 0, first.stderr
    body = json.loads(first.stdout)
    assert set(body) == {"access_token", "token_type", "expires_at", "expires_in"}
    assert body["token_type"].lower() == "bearer" and isinstance(body["expires_at"], int)
    assert 0 < body["expires_in"] <= 6 and isinstance(body["expires_in"], int)
    for min_valid in ("60", "0", "2"):  # 60 and 2 are both within what is left once capped at 3 s
        again = run("--config", str(config), "--min-valid", min_valid)
        assert again.stdout.strip() == body["access_token"]
    assert idp.token_request_count(CI_BASIC[0]) == 1
    time.sleep(max(body["expires_at"] - time.time() - 2.5, 0))  # less than the capped 3 s left
    fresh = run("--config", str(config))
    assert fresh.returncode == 0 and fresh.stdout.strip() != body["access_token"]
    assert idp.token_request_count(CI_BASIC[0]) == 2


def test_helper_refuses_to_call_itself(tmp_path: Path, run: Run) -> None:
    config = write_config(tmp_path, "", body=(
        "admin:\n  endpoint: dns:///127.0.0.1:9\n  authType: ExternalCommand\n  command: [flyteauth, token]\n"))
    result = run("--config", str(config))
    assert result.returncode == 2 and result.stdout == ""
    assert "would call itself" in result.stderr and "flyteauth:" in result.stderr
    assert "Traceback" not in result.stderr
    # ... also through a wrapper the config check cannot see: the environment guard stops the recursion.
    wrapper = tmp_path / "get-token.sh"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} -m flyteauth_core.cli token --config {tmp_path / 'w.yaml'}\n")
    wrapper.chmod(0o700)
    (tmp_path / "w.yaml").write_text(
        f"admin:\n  endpoint: dns:///127.0.0.1:9\n  authType: ExternalCommand\n  command: [{wrapper}]\n"
        "  authorizationHeader: authorization\n")
    nested = run("--config", str(tmp_path / "w.yaml"))
    assert nested.returncode == 4 and nested.stdout == ""
    assert "started by flyteauth token" in nested.stderr


@pytest.mark.parametrize("argv", [["flyteauth", "token"], ["/usr/local/bin/flyteauth", "token", "--json"],
                                  ["python3", "-m", "flyteauth_core.cli", "token"]])
def test_helper_command_is_recognised(argv: list[str]) -> None:
    assert is_helper_command(argv)
    assert not is_helper_command(["gcloud", "auth", "print-access-token"])


def test_exit_codes(idp_fresh: IdpServer, flyte_server: Callable[..., FlyteTestServer], tmp_path: Path,
                    run: Run) -> None:
    # 2: configuration (no file, a usage error)
    missing = run("--config", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    assert run("--min-valid", "soon").returncode == 2
    # 4: the IdP rejects the client; the wrong secret never appears
    wrong = "wrong-secret-for-helper-9c1"
    rejected = run("--config", str(write_config(tmp_path, idp_fresh.token_endpoint, secret=wrong)))
    assert rejected.returncode == 4 and rejected.stdout == "" and wrong not in rejected.stderr
    # one line on stderr: the error, not also the lifecycle's warning about the same failure (-v adds it)
    assert rejected.stderr.count("invalid_client") == 1 and "WARNING" not in rejected.stderr, rejected.stderr
    # 5: the IdP is unreachable
    down = run("--config", str(write_config(tmp_path, "http://127.0.0.1:9/token")))
    assert down.returncode == 5 and down.stdout == ""
    # 3: a human must log in first
    server = flyte_server(authorization_endpoint=idp_fresh.authorization_endpoint)
    pkce = write_config(tmp_path, "", body=(
        f"admin:\n  endpoint: dns:///{server.target}\n  insecure: true\n  authType: Pkce\n  tokenStore: file\n"))
    interactive = run("--config", str(pkce))
    assert interactive.returncode == 3 and "flyteauth login" in interactive.stderr


def test_an_expired_platform_token_is_a_configuration_exit(tmp_path: Path, run: Run) -> None:
    """A pod whose projected token stopped rotating: exit 2 (fix the setup), not 1 or 5 (retrying won't help);
    stderr names the file, and no IdP is contacted (the token URL is a closed port)."""
    import base64

    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    token_file = tmp_path / "projected-token"
    token_file.write_text(f"{part({'alg': 'RS256'})}.{part({'sub': 'system:serviceaccount:ml:a', 'exp': 1000})}.c2ln")
    config = tmp_path / "config.yaml"
    config.write_text("admin:\n  endpoint: dns:///127.0.0.1:9\n  insecure: true\n  authType: TokenExchange\n"
                      f"  tokenUrl: http://127.0.0.1:9/token\n  platformTokenFile: {token_file}\n")
    expired = run("--config", str(config))
    assert expired.returncode == 2 and expired.stdout == "", expired.stderr
    assert str(token_file) in expired.stderr and "expired" in expired.stderr.lower()
