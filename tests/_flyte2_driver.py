"""Child process: flyte 2.x (the real ``flyte`` package) configured by a flytectl config file, calling
``IdentityService.UserInfo`` over Connect for a while.

    python tests/_flyte2_driver.py CONFIG SECONDS

Prints one JSON line ``{"calls": n, "failed": n, "errors": [...]}``.  Kept free of flyteauth imports: flyte 2.x
reaches flyteauth only through ``admin.command`` (ExternalCommand), as a user's flyte does.
"""

import asyncio
import json
import sys
import time


async def main(config: str, seconds: float) -> None:
    import flyte
    from flyte._initialize import get_client
    from flyteidl2.auth.identity_pb2 import UserInfoRequest

    await flyte.init_from_config.aio(config)
    identity = get_client().identity_service
    calls = failed = 0
    errors: list[str] = []
    stop = time.monotonic() + seconds
    while time.monotonic() < stop:
        try:
            await identity.user_info(UserInfoRequest())
        except Exception as exc:
            failed += 1
            errors.append(f"{type(exc).__name__}: {exc}"[:200])
        calls += 1
        await asyncio.sleep(0.02)
    print(json.dumps({"calls": calls, "failed": failed, "errors": errors[:3]}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
