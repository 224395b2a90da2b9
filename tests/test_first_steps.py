"""What a new user met following README.md and docs/ alone (issue 17's walk-through of 0.3.0).

Each test is one finding: an error that did not name its fix, a problem that changed severity or went
unreported depending on the command, a message said twice.  Real peers (``flyteauth_core.testing``'s token
endpoint and Flyte server); ``sys.modules[...] = None`` stands in for an extra that is not installed.
"""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path

import pytest

from flyteauth_core import ConfigError, load_config
from flyteauth_core.config_report import main as config_main
from flyteauth_core.doctor import Doctor
from flyteauth_core.testing import DemoTokenEndpoint, FlyteTestServer

SECRET = "first-steps-secret-41c7"


def write(tmp_path: Path, body: str, *, secret_mode: int = 0o600) -> Path:
    secret = tmp_path / "client_secret"
    secret.write_text(SECRET + "\n")
    secret.chmod(secret_mode)
    config = tmp_path / "config.yaml"
    config.write_text("admin:\n  endpoint: dns:///127.0.0.1:1\n  insecure: true\n  clientId: ci\n"
                      f"  clientSecretLocation: {secret}\n{body}")
    return config


def config_report(config: Path) -> tuple[int, str]:
    out = io.StringIO()
    return config_main(str(config), out=out), out.getvalue()


@pytest.mark.parametrize(("line", "fix"), [
    ('  insecure: "maybe"\n', "Set admin.insecure to true or false"),
    ("  scopes: 5\n", "Set admin.scopes to a YAML list of strings"),
    ("  maxRetries: many\n", "Set admin.maxRetries to a number such as 3"),
])
def test_a_value_that_does_not_parse_names_the_fix_everywhere(tmp_path: Path, line: str, fix: str) -> None:
    """0.3.0 before this: "fix: Fix admin.insecure" in `flyteauth config` and doctor, no fix at all at runtime."""
    config = write(tmp_path, "  authType: ClientSecret\n" + line)
    with pytest.raises(ConfigError) as raised:
        load_config(config, env={})
    assert fix in str(raised.value)
    code, text = config_report(config)
    assert code == 1 and f"fix: {fix}" in text
    step = Doctor(str(config), timeout=5, env={}).run()[0]
    assert step.status == "fail" and fix in (step.fix or "")


def test_a_store_whose_extra_is_missing_is_an_error_in_config_and_doctor(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """0.3.0 before this: `flyteauth config` said "problems: none" (exit 0), doctor "unexpected
    MissingExtraError ... Report this as a bug"; only the runtime named the extra."""
    monkeypatch.setitem(sys.modules, "redis", None)  # what `import redis` does without the extra
    config = write(tmp_path, "  authType: ClientSecret\n  tokenStore: redis\n  redisURL: redis://127.0.0.1:1\n")
    code, text = config_report(config)
    assert code == 1, text
    assert "error: admin.tokenStore: redis needs the 'redis' package" in text and "pip install -e '.[redis]'" in text
    step = Doctor(str(config), timeout=5, env={}).run()[0]
    assert step.status == "fail" and "admin.tokenStore: redis needs the 'redis' package" in step.summary
    assert "pip install -e '.[redis]'" in (step.fix or "") and "unexpected" not in step.summary


def test_config_names_the_registered_auth_type_for_an_alias(tmp_path: Path) -> None:
    """What a plugin and the events see (the registered name), with the user's spelling beside it."""
    code, text = config_report(write(tmp_path, "  authType: client_credentials\n"))
    assert code == 0, text
    assert "auth type:   ClientSecret (authType client_credentials; explicit authType" in text


def test_a_readable_secret_file_is_reported_once_by_flyteauth_config(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """0.3.0 before this: the warning came twice, once as a log line on stderr and once in the report."""
    config = write(tmp_path, "  authType: ClientSecret\n", secret_mode=0o644)
    with caplog.at_level(logging.WARNING, logger="flyteauth"):
        code, text = config_report(config)
    assert code == 0 and text.count("readable by others") == 1, text
    assert not [r for r in caplog.records if "readable by others" in r.getMessage()]


def test_doctor_says_an_unreachable_token_url_is_not_the_advertised_one(tmp_path: Path) -> None:
    """The likeliest cause of an unreachable configured tokenUrl is the tokenUrl itself: say what the server
    advertises instead of only "check that the IdP is up"."""
    with DemoTokenEndpoint("ci", SECRET, ttl=600) as idp, \
            FlyteTestServer(idp.validate, token_endpoint=idp.url) as server:
        config = write(tmp_path, "  authType: ClientSecret\n  tokenUrl: http://127.0.0.1:1/token\n")
        config.write_text(config.read_text().replace("127.0.0.1:1\n", f"{server.target}\n", 1))
        results = Doctor(str(config), timeout=5, env={}).run()
    idp_step = results[3]
    assert idp_step.name == "idp" and idp_step.status == "fail", [(r.name, r.status) for r in results]
    assert f"is not the token endpoint the server advertises ({idp.url})" in idp_step.summary
    assert idp_step.key == "admin.tokenUrl" and "Remove admin.tokenUrl" in (idp_step.fix or "")


def test_token_help_lists_every_exit_code_the_readme_does() -> None:
    """README's command table: exit 2 includes an untrusted per-directory config file (`flyteauth trust`)."""
    import subprocess

    result = subprocess.run([sys.executable, "-m", "flyteauth_core.cli", "token", "--help"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for code in ("0 ok", "1 unexpected", "2 configuration", "3 a human must log in", "4 the IdP rejected",
                 "5 transient"):
        assert code in text, text
    assert "untrusted per-directory config file: `flyteauth trust`" in text
