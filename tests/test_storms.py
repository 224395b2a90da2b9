"""Refresh storms against the real IdP: however many callers ask at once, the IdP sees one token request.

Counts come from the IdP itself (`idp.token_request_count`), not from the session's own bookkeeping.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import threading
import time
from collections.abc import Callable

import pytest

from flyteauth_core import AuthSession, TokenState
from flyteauth_core.testing import ECHO, FlyteTestServer

from ._idp import CI_BASIC_ID, IdpServer
from ._interactive_helpers import thread_storm

pytestmark = pytest.mark.idp

SessionFactory = Callable[..., tuple[AuthSession, FlyteTestServer]]


def _exp(access_token: str) -> float:
    payload = access_token.split(".")[1]
    return float(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"])


def test_64_threads_on_a_cold_session_make_one_token_request(
    idp_session: SessionFactory, idp_fresh: IdpServer
) -> None:
    session, server = idp_session()
    unary = session.channel().unary_unary(ECHO["unary"])

    results = thread_storm(64, lambda i: unary(b"%d" % i))

    assert results == [b"%d" % i for i in range(64)]
    assert idp_fresh.token_request_count(CI_BASIC_ID) == 1
    assert session.stats.token_requests == 1
    assert server.stats["calls"] == 64 and server.stats["rejected"] == 0


async def test_512_coroutines_on_a_cold_aio_channel_make_one_token_request(
    idp_session: SessionFactory, idp_fresh: IdpServer
) -> None:
    session, server = idp_session()
    async with session.aio_channel() as achannel:
        unary = achannel.unary_unary(ECHO["unary"])
        results = await asyncio.gather(*(unary(b"%d" % i) for i in range(512)))

    assert results == [b"%d" % i for i in range(512)]
    assert idp_fresh.token_request_count(CI_BASIC_ID) == 1
    assert server.stats["calls"] == 512 and server.stats["rejected"] == 0


def test_storm_after_expiry_makes_exactly_one_more_request(
    idp_session: SessionFactory, idp_fresh: IdpServer
) -> None:
    session, server = idp_session()
    unary = session.channel().unary_unary(ECHO["unary"])
    assert thread_storm(64, lambda i: unary(b"a")) == [b"a"] * 64
    assert idp_fresh.token_request_count(CI_BASIC_ID) == 1
    first = session.get_token()

    # Idle past the token's lifetime: no call, so nothing refreshes it in the background.
    assert first.expires_at is not None
    time.sleep(max(0.0, first.expires_at - time.time()) + 0.2)
    assert session.stats.token_requests == 1

    assert thread_storm(64, lambda i: unary(b"b")) == [b"b"] * 64
    assert idp_fresh.token_request_count(CI_BASIC_ID) == 2
    assert session.get_token().access_token != first.access_token
    assert server.stats["calls"] == 128 and server.stats["rejected"] == 0


def test_background_refresh_over_three_expiries_never_makes_a_caller_wait(
    idp_session: SessionFactory, idp_fresh: IdpServer
) -> None:
    """8 threads call steadily for three 2 s token lifetimes.

    Each token is replaced once, in the background, inside its refresh window (the default policy
    refreshes at about half its life, so about two requests per lifetime): never twice, never late,
    and no caller waits after the first cold call.
    """
    session, server = idp_session()
    # When the server first saw each token: a token is "used" once a call carried it.  (Sampling
    # session.get_token() after each call instead could miss a short-lived token on a busy machine:
    # the call that noticed it was stale carried it, and its replacement was out before the sample.)
    first_use: dict[str, float] = {}
    lock = threading.Lock()
    validate = server.validate

    def recording(token: str) -> str | None:
        seen = time.time()
        with lock:
            first_use.setdefault(token, seen)
        return validate(token)

    server.validate = recording
    unary = session.channel().unary_unary(ECHO["unary"])
    assert unary(b"cold") == b"cold"
    assert session.stats.waits == 1
    stop = time.monotonic() + 3 * 2.0  # three IdP token lifetimes

    def caller(i: int) -> int:
        n = 0
        while time.monotonic() < stop:
            assert unary(b"%d" % i) == b"%d" % i
            n += 1
            time.sleep(0.02)
        return n

    results = thread_storm(8, caller)
    assert all(isinstance(r, int) and r > 50 for r in results), results
    # The storm's last calls may have started a refresh whose token lands after them (on a busy machine
    # the IdP's answer takes a while): calls after the storm send the current token, so every token the
    # IdP issued has had its chance to be sent.  A token replaced before any call sent it stays unsent.
    for _ in range(100):
        assert unary(b"after") == b"after"
        if session.manager.state() is TokenState.FRESH:
            current = session.get_token().access_token
            if current in first_use and session.manager.state() is TokenState.FRESH:
                break
        time.sleep(0.05)

    requests = idp_fresh.token_request_count(CI_BASIC_ID)
    tokens = sorted(first_use, key=first_use.__getitem__)
    # Every token the IdP issued was sent by a call (no duplicate, wasted refresh) ...
    assert requests == session.stats.token_requests == len(tokens), (requests, session.stats, len(tokens))
    assert session.stats.background_refreshes == requests - 1
    # ... and the count matches the token lifetimes that ran out: one replacement per token (the last
    # one or two replaced tokens may still be inside their lifetime: they are replaced at mid-life).
    expiries = sum(1 for t in tokens[:-1] if _exp(t) <= time.time())
    assert 0 <= requests - 1 - expiries <= 2, (requests, expiries)
    assert 3 <= requests <= 2 * 3 + 3, requests
    # Each replacement happened inside the old token's refresh window: not early (a storm), not late.
    for old, new in itertools.pairwise(tokens):
        obtained, replaced, exp = first_use[old], first_use[new], _exp(old)
        assert replaced >= obtained + 0.3 * (exp - obtained), (obtained, replaced, exp)
        assert replaced <= exp + 0.1, (obtained, replaced, exp)
    assert session.stats.waits == 1, session.stats  # nobody waited after the cold call
    assert server.stats["rejected"] == 0, dict(server.stats)
