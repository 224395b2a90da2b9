"""Helpers shared by the fault suite (and reusable by any test that provokes failures).

* :class:`Row` / :func:`markdown_table`: the scenario table the suite prints.
* :func:`closed_port`, :func:`jwt_claims`, :func:`retry_deadline`, :class:`RequestTimes`, :class:`RaisingStore`.
"""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import attrs

from flyteauth_core.http import RetryPolicy


@attrs.define
class Row:
    """One line of the fault table; ``passed`` is filled in from the test's outcome."""

    scenario: str
    expected: str = ""
    observed: str = ""
    passed: bool | None = None
    seconds: float = 0.0

    def see(self, text: str) -> None:
        """Append an observation (several are joined with ``; ``)."""
        self.observed = f"{self.observed}; {text}" if self.observed else text


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_cell(str(c)) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    return "\n".join([line, sep, *body])


def fault_table(rows: Sequence[Row]) -> str:
    verdict = {True: "pass", False: "FAIL", None: "not run"}
    return markdown_table(
        ["scenario", "expected", "observed", "pass", "s"],
        [[r.scenario, r.expected, r.observed, verdict[r.passed], f"{r.seconds:.1f}"] for r in rows],
    )


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def jwt_claims(access_token: str) -> dict[str, Any]:
    """The (unverified) claims of a JWT."""
    payload = access_token.split(".")[1]
    claims: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return claims


def retry_deadline(policy: RetryPolicy, per_attempt: float) -> float:
    """The longest a token request may take under ``policy``: every attempt timing out after
    ``per_attempt`` seconds plus the longest backoff between attempts (full jitter's upper bound)."""
    backoff = sum(min(policy.max_delay, policy.initial_delay * 2**i) for i in range(policy.attempts - 1))
    return policy.attempts * per_attempt + backoff


class RequestTimes:
    """Polls a counter (e.g. the IdP's token-request count) and records when it went up."""

    def __init__(self, read: Any, interval: float = 0.02) -> None:
        self._read = read
        self._interval = interval
        self.times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, name="request-times", daemon=True)

    def _poll(self) -> None:
        last = self._read()
        while not self._stop.wait(self._interval):
            now, value = time.monotonic(), self._read()
            self.times += [now] * max(0, value - last)
            last = value

    @contextmanager
    def running(self) -> Iterator[RequestTimes]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(timeout=5)

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.times, self.times[1:], strict=False)]


class StoreBroken(RuntimeError):
    pass


class RaisingStore:
    """A token store (with the optional cross-process lock) that raises on every operation."""

    def __init__(self) -> None:
        self.attempts: dict[str, int] = {"load": 0, "save": 0, "delete": 0, "lock": 0}

    def _fail(self, op: str) -> Any:
        self.attempts[op] += 1
        raise StoreBroken(f"store {op} is broken")

    def load(self, key: str) -> Any:
        return self._fail("load")

    def save(self, key: str, token: Any) -> None:
        self._fail("save")

    def delete(self, key: str) -> None:
        self._fail("delete")

    def lock(self, key: str) -> Any:
        return self._fail("lock")
