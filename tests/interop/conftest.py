"""Fixtures of the interop suite: the servers (session-scoped, started and stopped here), one ``peer``
parameter naming the matrix column, and the recorder behind ``benchmarks/interop.py``'s matrix.

Every test carries ``@pytest.mark.interop_flow("row name, with {param} fields")``: the row of the matrix
its outcome fills, for the column of its ``peer`` parameter.  With ``FLYTEAUTH_INTEROP_REPORT=path`` the
outcomes are written there as JSON when the session ends.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .._idp import CI_BASIC, CI_PKJWT_ID, CI_PKJWT_KEY_PATH, CI_POST, IdpServer, _truthy_env
from .._leakscan import register_secret
from ._servers import DotServer, Peer, ServerUnavailable

#: tests/idp's client_secret_jwt client (server.mjs)
CI_SECRET_JWT = ("ci-secret-jwt", "ci-secret-jwt-secret-value-0123456789abcdef")
#: The matrix columns, in order: our own test IdP first, for reference.
PEERS = ("oidc-provider", "django-oauth-toolkit", "glewlwyd")
_RESULTS: list[dict[str, Any]] = []


#: The reference column's interactive logins run with the file store only: its stores are covered by the
#: main suite (tests/test_pkce.py, test_device_flow.py, test_redis_store.py), and each login costs seconds.
_REFERENCE_ONLY_FILE = ("test_pkce_login_in_the_browser_then_refresh", "test_device_login_then_refresh")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    keep, drop = [], []
    for item in items:
        if "tests/interop/" not in item.nodeid.replace("\\", "/"):
            keep.append(item)
            continue
        item.add_marker(pytest.mark.interop)
        params = getattr(getattr(item, "callspec", None), "params", {})
        if (getattr(item, "originalname", "") in _REFERENCE_ONLY_FILE and params.get("peer") == "oidc-provider"
                and params.get("store") != "file"):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def unavailable(reason: str) -> None:
    """A server that cannot run here: an error under CI (it must), a skip naming the reason elsewhere.
    Either way the matrix shows ``✗ not installable/runnable: reason``."""
    if _truthy_env("CI"):
        pytest.fail(f"not installable/runnable: {reason}", pytrace=False)
    pytest.skip(f"not installable/runnable: {reason}")


@pytest.fixture(scope="session")
def dot_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DotServer]:
    server = DotServer(tmp_path_factory.mktemp("dot"))
    try:
        server.start()
    except ServerUnavailable as exc:
        unavailable(str(exc))
    from .dot.serve import CLIENTS, USER

    register_secret(CLIENTS["flyte-cc"][2], "DOT client secret")
    register_secret(USER[1], "DOT user password")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def glewlwyd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from ._glewlwyd import CLIENT_SECRET, USER, GlewlwydServer

    server = GlewlwydServer(tmp_path_factory.mktemp("glewlwyd"))
    try:
        server.start()
    except ServerUnavailable as exc:
        unavailable(str(exc))
    register_secret(CLIENT_SECRET, "glewlwyd client secret")
    register_secret(USER[1], "glewlwyd user password")
    try:
        yield server
    finally:
        server.stop()


def _oidc_provider_peer(idp: IdpServer) -> Peer:
    from .._browser import complete_device_login, complete_login
    from .._idp import NATIVE_CLIENT_ID, native_redirect_uri
    from ._servers import free_port

    register_secret(CI_SECRET_JWT[1], "oidc-provider client_secret_jwt secret")

    def validate(token: str) -> str | None:
        from ..conftest import jwt_validator

        return jwt_validator(idp)(token)

    def device(driver: Any, code: Any) -> str:
        return complete_device_login(driver, code.verification_uri_complete)

    return Peer(
        name="oidc-provider", issuer=idp.issuer, token_endpoint=idp.token_endpoint,
        authorization_endpoint=idp.authorization_endpoint,
        device_authorization_endpoint=idp.device_authorization_endpoint,
        secret_clients={"client_secret_basic": CI_BASIC, "client_secret_post": CI_POST},
        assertion_clients={"private_key_jwt": (CI_PKJWT_ID, str(CI_PKJWT_KEY_PATH)),
                           "client_secret_jwt": CI_SECRET_JWT},
        public_client=NATIVE_CLIENT_ID, device_client=NATIVE_CLIENT_ID, scopes=("openid", "offline_access", "all"),
        redirect_uri=native_redirect_uri(free_port()), user=("alice", "pw"), validate=validate,
        browser_login=complete_login, device_approve=device,
    )


@pytest.fixture(params=PEERS)
def peer(request: pytest.FixtureRequest) -> Peer:
    """Each server in turn (the matrix columns)."""
    name = request.param
    if name == "oidc-provider":
        return _oidc_provider_peer(request.getfixturevalue("idp_fresh"))
    if name == "django-oauth-toolkit":
        return request.getfixturevalue("dot_server").peer()
    return request.getfixturevalue("glewlwyd_server").peer()


def flow_of(item: pytest.Item) -> tuple[str, str] | None:
    """``(row, column)`` of the matrix cell an item fills, or None."""
    marker = item.get_closest_marker("interop_flow")
    if marker is None:
        return None
    params = dict(getattr(getattr(item, "callspec", None), "params", {}))
    column = params.get("peer") or (marker.kwargs.get("peer"))
    if column is None:
        return None
    return str(marker.args[0]).format(**params), str(column)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    cell = flow_of(item)
    if cell is None or (report.when != "call" and report.passed):
        return
    if report.skipped and hasattr(report, "wasxfail"):
        result, reason = "xfail", str(report.wasxfail).removeprefix("reason: ")
    elif report.skipped:
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        result = "n/a" if reason.startswith("n/a") else "skipped"
    elif report.failed:
        result = "failed"
        crash = getattr(report.longrepr, "reprcrash", None)
        reason = crash.message if crash is not None else str(report.longrepr)
    else:
        result, reason = "passed", ""
    _RESULTS.append({"flow": cell[0], "idp": cell[1], "result": result, "reason": reason.splitlines()[0][:300]
                     if reason else "", "test": item.nodeid, "when": report.when})


def pytest_sessionfinish(session: pytest.Session) -> None:
    path = os.environ.get("FLYTEAUTH_INTEROP_REPORT")
    if path and _RESULTS:
        Path(path).write_text(json.dumps(_RESULTS, indent=1))
