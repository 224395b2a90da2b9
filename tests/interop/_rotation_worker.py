"""One process of the rotation proof: ``python -m tests.interop._rotation_worker CONFIG.json OUT.json``.

Takes tokens from the shared store (file or redis) in a loop until the stop file appears, refreshing
whenever the short-lived access token goes stale, like a long-running Flyte client would.  Writes what it
saw: the distinct access tokens and any error (a reuse detection at the IdP ends the grant, and the next
refresh fails with ``invalid_grant``, surfacing here as an error since the worker may not log in).  As it
goes, it appends a digest of each new access token to ``OUT.json.progress``: the test follows the fleet's
refreshes there, not in the server's database (glewlwyd fails a write that meets a reader's sqlite lock).
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    from flyteauth_core import AuthConfig, AuthSession

    config = AuthConfig(endpoint=spec["endpoint"], insecure=True, auth_type="DeviceFlow",
                        client_id=spec["client_id"], token_url=spec["token_url"], options=spec["options"])
    seen: list[str] = []
    errors: list[str] = []
    stop, start = Path(spec["stop_file"]), Path(spec["start_file"])
    progress = Path(sys.argv[2] + ".progress")
    while not start.exists():  # started before the login, to overlap the interpreter's start with it
        if stop.exists():
            return
        time.sleep(0.05)
    with AuthSession(config, store=spec["store"], interactive=False) as session:
        while not stop.exists():
            try:
                token = session.get_token().access_token
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}"[:300])
                if len(errors) >= 5:
                    break  # the grant is gone; nothing more to learn
                time.sleep(0.2)
                continue
            if not seen or seen[-1] != token:
                seen.append(token)
                with progress.open("a") as fh:  # a digest, never the token
                    fh.write(hashlib.sha256(token.encode()).hexdigest()[:16] + "\n")
            time.sleep(0.05)
    Path(sys.argv[2]).write_text(json.dumps({"tokens": len(set(seen)), "errors": errors}))


if __name__ == "__main__":
    main()
