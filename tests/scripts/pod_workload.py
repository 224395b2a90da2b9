"""A pod-like workload: only a config file (``$FLYTEAUTH_CONFIG``) and a projected token file, no secret.

``pod_workload.py SECONDS [READY_FILE]`` calls the Flyte test server's unary Echo every 10 ms for SECONDS
and prints one JSON line: calls, failed calls (with the first errors), distinct access tokens seen, the
token requests the session made, and the authenticator's ``describe()`` (claims, never the token).
``READY_FILE`` is created after the first successful call, so the parent can time the rotation.
"""

import json
import sys
import time
from pathlib import Path

from flyteauth_core import AuthSession, load_config
from flyteauth_core.testing import ECHO


def main() -> None:
    seconds = float(sys.argv[1])
    ready = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    calls, failed, errors, tokens = 0, 0, [], set()
    with AuthSession(load_config()) as session:
        unary = session.channel().unary_unary(ECHO["unary"])
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            calls += 1
            try:
                assert unary(b"ping", timeout=10) == b"ping"
                tokens.add(session.get_token().access_token)
            except Exception as exc:
                failed += 1
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
            if ready is not None and calls == 1:
                ready.touch()
            time.sleep(0.01)
        describe = session._authenticator.details()
        print(json.dumps({"calls": calls, "failed": failed, "errors": errors[:3], "tokens": len(tokens),
                          "token_requests": session.stats.token_requests, "describe": describe}, default=str))


if __name__ == "__main__":
    main()
