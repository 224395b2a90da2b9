"""The Connect drivers against connectrpc's current release (its own protobuf runtime; request_headers a
property since 0.11), which cannot share a venv with the 0.10 that flyteidl2's stubs need.

Run by tests/test_connect_latest.py with PYTHONPATH=build/connectrpc-latest (installed there by scripts/test).
A unary call and a server stream retried after a rejection, a client stream not replayed but invalidating,
a sync client retried.  Prints "ok ..." and exits 0.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import connectrpc
import uvicorn
from connectrpc.client import ConnectClient, ConnectClientSync
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from connectrpc.method import IdempotencyLevel, MethodInfo, StreamType  # type: ignore[attr-defined]
from connectrpc.server import ConnectASGIApplication, Endpoint
from protobuf.wkt import StringValue  # type: ignore[import-not-found]

from flyteauth_core import AuthConfig, AuthSession
from flyteauth_core.lifecycle import RejectionBrake
from flyteauth_core.testing import DemoTokenEndpoint, judge_bearer

KINDS = (("Unary", StreamType.UNARY), ("ServerStream", StreamType.SERVER_STREAM),
         ("ClientStream", StreamType.CLIENT_STREAM))
METHODS = {name: MethodInfo(name=name, service_name="t.Echo", input=StringValue, output=StringValue,
                            idempotency_level=IdempotencyLevel.UNKNOWN, stream_type=kind) for name, kind in KINDS}
STATE: dict[str, Any] = {"revoked": set(), "calls": 0, "rejected": 0}


class Echo:
    def __init__(self, validate: Any) -> None:
        self.validate = validate

    def check(self, ctx: Any) -> None:
        def validate(token: str) -> str | None:
            return "revoked" if token in STATE["revoked"] else self.validate(token)

        reason = judge_bearer(ctx.request_headers.get("authorization"), "authorization", validate)
        STATE["calls"] += 1
        if reason:
            STATE["rejected"] += 1
            raise ConnectError(Code.UNAUTHENTICATED, reason)

    async def unary(self, request: Any, ctx: Any) -> Any:
        self.check(ctx)
        return StringValue(value=request.value)

    async def server_stream(self, request: Any, ctx: Any) -> Any:
        self.check(ctx)
        for i in range(3):
            yield StringValue(value=str(i))

    async def client_stream(self, requests: Any, ctx: Any) -> Any:
        self.check(ctx)
        count = 0
        async for _ in requests:
            count += 1
        return StringValue(value=str(count))


class App(ConnectASGIApplication):  # type: ignore[type-arg]
    def __init__(self, svc: Echo) -> None:
        super().__init__(service=svc, endpoints=lambda x: {
            "/t.Echo/Unary": Endpoint.unary(method=METHODS["Unary"], function=x.unary),
            "/t.Echo/ServerStream": Endpoint.server_stream(method=METHODS["ServerStream"], function=x.server_stream),
            "/t.Echo/ClientStream": Endpoint.client_stream(method=METHODS["ClientStream"], function=x.client_stream),
        })

    @property
    def path(self) -> str:
        return "/t.Echo"


async def calls(url: str, session: AuthSession) -> None:
    async with ConnectClient(url, interceptors=session.connect_interceptors()) as client:
        assert (await client.execute_unary(request=StringValue(value="x"), method=METHODS["Unary"])).value == "x"
        STATE["revoked"].add(session.get_token().access_token)
        assert (await client.execute_unary(request=StringValue(value="y"), method=METHODS["Unary"])).value == "y"
        STATE["revoked"].add(session.get_token().access_token)
        stream = client.execute_server_stream(request=StringValue(), method=METHODS["ServerStream"])
        assert [m.value async for m in stream] == ["0", "1", "2"]
        STATE["revoked"].add(session.get_token().access_token)

        async def requests() -> Any:
            yield StringValue(value="a")

        try:
            await client.execute_client_stream(request=requests(), method=METHODS["ClientStream"])
            raise SystemExit("a client stream with a revoked token was not rejected")
        except ConnectError as error:
            assert error.code is Code.UNAUTHENTICATED
        assert (await client.execute_unary(request=StringValue(value="z"), method=METHODS["Unary"])).value == "z"


def main() -> None:
    print("connectrpc", connectrpc.__file__)
    with DemoTokenEndpoint("c", "s", ttl=600) as idp:
        sock = socket.socket()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(App(Echo(idp.validate)), log_level="error", lifespan="off"))
        thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = AuthConfig(endpoint=url, auth_type="ClientSecret", client_id="c", client_secret="s",
                            token_url=idp.url, authorization_header="authorization")
        try:
            with AuthSession(config) as session:
                # every replacement is revoked right away: retry mechanics, not the rejection brake, are tested
                session.manager.brake = RejectionBrake(window=0.0)
                asyncio.run(calls(url, session))
                with ConnectClientSync(url, interceptors=session.connect_interceptors_sync()) as client:
                    STATE["revoked"].add(session.get_token().access_token)
                    assert client.execute_unary(request=StringValue(value="s"), method=METHODS["Unary"]).value == "s"
                print("ok: calls", STATE["calls"], "rejected", STATE["rejected"], session.stats)
        finally:
            server.should_exit = True
            thread.join(5)
            sock.close()


if __name__ == "__main__":
    main()
