"""The brake on rejection storms (issue 9, item 4).

A server that rejects every token (wrong audience, clock skew, wrong header key) must cost a bounded
number of IdP requests, and the calls must fail with a typed error naming the likely causes; an IdP
that refuses the client (``invalid_client``, ``unauthorized_client``, ``invalid_scope``) is not asked
again for a while.  On 0.1.0 every rejected RPC invalidated the token and fetched a new one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import grpc
import pytest

from flyteauth_core import AuthConfig, AuthSession
from flyteauth_core.errors import InvalidClientError, TokenRejectedError, TokenRequestError
from flyteauth_core.lifecycle import RejectionBrake, TokenManager
from flyteauth_core.testing import ECHO, DemoTokenEndpoint, FlyteTestServer
from flyteauth_core.token import Token

THREADS = 16
SECONDS = 10.0


@pytest.fixture
def idp() -> Iterator[DemoTokenEndpoint]:
    with DemoTokenEndpoint("storm", "storm-secret", ttl=600) as endpoint:
        yield endpoint


def _session(idp: DemoTokenEndpoint, server: FlyteTestServer, secret: str = "storm-secret") -> AuthSession:
    config = AuthConfig(endpoint=server.target, insecure=True, auth_type="ClientSecret", client_id="storm",
                        client_secret=secret, token_url=idp.url)
    return AuthSession(config, store="memory", interactive=False)


def test_a_server_rejecting_every_token_costs_at_most_5_token_requests(idp: DemoTokenEndpoint) -> None:
    outcomes: dict[str, int] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []
    with FlyteTestServer(lambda token: "wrong audience") as server, _session(idp, server) as session:
        unary = session.channel().unary_unary(ECHO["unary"])
        stop = time.monotonic() + SECONDS

        def call() -> None:
            while time.monotonic() < stop:
                try:
                    unary(b"x", timeout=5)
                    kind = "ok"
                except TokenRejectedError as exc:
                    kind = "TokenRejectedError"
                    if not errors:
                        errors.append(exc)
                except grpc.RpcError as exc:
                    kind = f"RpcError {exc.code().name}"
                with lock:
                    outcomes[kind] = outcomes.get(kind, 0) + 1

        threads = [threading.Thread(target=call) for _ in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(SECONDS + 10)
        rejected_calls = server.stats["rejected"]
    print(f"\n{THREADS} threads x {SECONDS:.0f}s: {idp.requests} token requests, outcomes {outcomes}, "
          f"{rejected_calls} calls rejected by the server")
    assert idp.requests <= 5
    assert outcomes.get("ok", 0) == 0 and outcomes.get("TokenRejectedError", 0) > 0
    message = str(errors[0])
    for cause in ("audience", "clock", "header key"):
        assert cause in message


def test_repeated_rejections_back_off() -> None:
    """Each brake is longer than the last; between brakes at most one new token is fetched."""
    now = [1000.0]
    issued: list[str] = []

    def acquire(previous: Token | None, reason: str) -> Token:
        issued.append(f"t{len(issued)}")
        return Token(issued[-1], expires_at=now[0] + 3600)

    manager = TokenManager(acquire, clock=lambda: now[0], brake=RejectionBrake(window=30, initial=5, maximum=300))
    delays = []
    for _ in range(6):
        sent = manager.metadata()
        try:
            while True:  # reject whatever is sent until the brake engages
                assert manager.rejected(sent)
                sent = manager.metadata()
        except TokenRejectedError as exc:
            delays.append(exc.retry_in)
        now[0] += delays[-1] + 31  # past the brake and past the window: the next rejection may refetch
    assert delays == [5, 10, 20, 40, 80, 160]
    # the first token and its two replacements (a first rejected replacement may follow a revocation),
    # then one replacement per later brake
    assert len(issued) == 3 + 5


def test_the_brakes_warning_names_the_same_likely_causes_as_its_error(caplog: pytest.LogCaptureFixture) -> None:
    """Issue 16 item 8: the WARNING an operator greps for said only "rejected ...; not asking the IdP", the
    causes were in the error alone (0.2.0 logged ``error.message``).  Now one text serves both."""
    now = [1000.0]

    def acquire(previous: Token | None, reason: str) -> Token:
        return Token(f"t{now[0]}-{reason}", expires_at=now[0] + 3600)

    manager = TokenManager(acquire, clock=lambda: now[0], endpoint="dns:///flyte.example.com")
    caplog.set_level("WARNING", logger="flyteauth.lifecycle")
    sent = manager.metadata()
    with pytest.raises(TokenRejectedError) as raised:
        while True:
            assert manager.rejected(sent)
            sent = manager.metadata()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "rejected" in r.getMessage()]
    assert len(warnings) == 1
    assert raised.value.hint and raised.value.hint in warnings[0]
    for cause in ("audience", "clock", "header key"):
        assert cause in warnings[0]


@pytest.mark.parametrize("error", ["invalid_client", "unauthorized_client", "invalid_scope"])
def test_non_transient_idp_errors_are_remembered(error: str) -> None:
    now = [1000.0]
    calls = []

    def acquire(previous: Token | None, reason: str) -> Token:
        calls.append(reason)
        cls = InvalidClientError if error == "invalid_client" else TokenRequestError
        raise cls(f"refused: {error}", endpoint="https://idp/token", status=400, error=error)

    manager = TokenManager(acquire, clock=lambda: now[0], brake=RejectionBrake(fatal_ttl=60))
    for _ in range(50):
        with pytest.raises(TokenRequestError):
            manager.metadata()
    assert len(calls) == 1 and manager.stats.cached_failures == 49
    now[0] += 61  # bounded: after fatal_ttl the IdP is asked again
    with pytest.raises(TokenRequestError):
        manager.token()
    assert len(calls) == 2


def test_wrong_secret_under_a_storm_asks_the_idp_once(idp: DemoTokenEndpoint) -> None:
    with FlyteTestServer(idp.validate) as server, _session(idp, server, secret="wrong") as session:
        unary = session.channel().unary_unary(ECHO["unary"])
        for _ in range(20):
            with pytest.raises(InvalidClientError):
                unary(b"x", timeout=5)
    assert idp.requests == 1


def test_an_accepted_replacement_ends_the_chain_only_for_the_token_that_was_accepted() -> None:
    """``accepted(sent)`` compares like ``rejected(sent)``: a stale report about another token (or about a
    token rejected again since) leaves the chain, so the brake still stops a server rejecting every token."""
    now = [1000.0]
    issued: list[str] = []

    def acquire(previous: Token | None, reason: str) -> Token:
        issued.append(f"t{len(issued)}")
        return Token(issued[-1], expires_at=now[0] + 3600)

    manager = TokenManager(acquire, clock=lambda: now[0])
    first = manager.metadata()
    for _ in range(5):  # revoked, replaced, the replacement accepted (up to brake.burst in brake.window)
        assert manager.rejected(manager.metadata())
        manager.accepted(first)  # about an older token: ignored
        manager.accepted(manager.metadata())
    assert len(issued) == 6 and manager.stats.braked_rejections == 0
    sent = manager.metadata()
    assert manager.rejected(sent)
    replacement = manager.metadata()
    assert manager.rejected(replacement)
    manager.accepted(replacement)  # rejected since: the chain stays
    with pytest.raises(TokenRejectedError):
        manager.rejected(manager.metadata())


def test_accepted_replacements_still_brake_after_a_burst() -> None:
    """Behind a load balancer, one replica may reject every token while the others accept each
    replacement: acceptance ends the chain, so ``burst`` replacements within ``window`` brake instead
    (a bounded number of IdP requests), and the window moving on lets revocations be answered again."""
    now = [1000.0]
    issued: list[str] = []

    def acquire(previous: Token | None, reason: str) -> Token:
        issued.append(f"t{len(issued)}")
        return Token(issued[-1], expires_at=now[0] + 3600)

    manager = TokenManager(acquire, clock=lambda: now[0], brake=RejectionBrake(window=30, burst=10))
    with pytest.raises(TokenRejectedError) as error:
        for _ in range(100):
            assert manager.rejected(manager.metadata())  # the bad replica
            manager.accepted(manager.metadata())  # the retry lands on a good one
            now[0] += 0.1
    assert len(issued) == 1 + 10 and "11 tokens in 30s" in str(error.value)
    assert manager.metadata() == ((("authorization", "Bearer t10"),))  # the good replicas keep working
    now[0] += 31  # the burst has left the window
    assert manager.rejected(manager.metadata()) and manager.metadata()[0][1] == "Bearer t11"


def test_a_replica_rejecting_every_token_behind_a_balancer_costs_a_bounded_number(idp: DemoTokenEndpoint) -> None:
    """Every other call lands on a replica with the wrong audience; the retry lands on a good one and is
    accepted.  Acceptance alone would make that one token request per call; the burst bound stops it."""
    import itertools

    turn = itertools.count()
    outcomes: dict[str, int] = {}
    with FlyteTestServer(lambda token: "wrong audience" if next(turn) % 2 else None) as server, \
            _session(idp, server) as session:
        unary = session.channel().unary_unary(ECHO["unary"])
        for _ in range(100):
            try:
                unary(b"x", timeout=5)
                kind = "ok"
            except TokenRejectedError:
                kind = "TokenRejectedError"
            outcomes[kind] = outcomes.get(kind, 0) + 1
        burst = session.manager.brake.burst
    assert idp.requests <= 1 + burst < 100 // 2
    assert outcomes["ok"] > 50 and outcomes.get("TokenRejectedError", 0) > 0  # the good replicas keep serving
