"""One loopback port in front of a gRPC server and a Connect (HTTP/1.1) server, as a real Flyte's ingress is.

Why: flytekit and flytectl speak gRPC (HTTP/2) and flyte 2.x speaks Connect (HTTP/1.1 here) to the *same*
``admin.endpoint``; a config file names one endpoint.  The embedded servers are two processes' worth of
protocol stacks (grpcio, a WSGI server), so a small TCP relay decides per connection which one gets it:

* over TLS, by the ALPN protocol the client and we agree on.  We offer ``grpc-exp`` first (grpcio and
  grpc-core clients offer it), then ``http/1.1``, then ``h2``: a Connect client offering ``h2`` and
  ``http/1.1`` (pyqwest, httpx) gets HTTP/1.1; grpc-go, which offers only ``h2``, gets HTTP/2;
* in plaintext, or when no protocol was agreed, by the first bytes: the HTTP/2 connection preface means
  gRPC, anything else HTTP/1.1.

TLS ends here; the backends listen on 127.0.0.1 in plaintext.  Everything runs on one asyncio loop in a
daemon thread, so one SSL object is never read and written by two threads at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading

HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ALPN = ("grpc-exp", "http/1.1", "h2")
_CHUNK = 64 * 1024
#: The body of the 503 an HTTP/1.1 client (curl, httpx, a Connect client) gets when only gRPC is served.
NO_HTTP_BACKEND = (b"Connect and REST are not served: the demo runs without connectrpc. "
                   b"Install the extra (pip install -e '.[connect]' in the clone) and restart it.\n")


class FrontDoor:
    """Relay ``127.0.0.1:port`` to ``grpc_backend`` (HTTP/2) or ``http_backend`` (HTTP/1.1, optional)."""

    def __init__(self, grpc_backend: int, http_backend: int | None = None, *, port: int = 0,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        """Backends are ports on 127.0.0.1.  ``port=0`` picks a free one (``self.port`` after ``start``)."""
        self._backends = {"grpc": grpc_backend, "http": http_backend}
        self._requested_port = port
        self._ssl = ssl_context
        if ssl_context is not None:
            ssl_context.set_alpn_protocols(list(ALPN))
        self.port = 0
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="flyteauth-frontdoor", daemon=True)

    def start(self) -> FrontDoor:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        try:
            future.result(10)
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()
            raise
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self._requested_port, ssl=self._ssl,
                                                  ssl_handshake_timeout=10 if self._ssl else None)
        self.port = self._server.sockets[0].getsockname()[1]

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.ensure_future(self._relay(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        backend_writer: asyncio.StreamWriter | None = None
        try:
            kind, head = await self._route(reader, writer)
            port = self._backends[kind]
            if port is None:  # no Connect server: answer HTTP/1.1 clients plainly instead of hanging up
                writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain\r\ncontent-length: "
                             + str(len(NO_HTTP_BACKEND)).encode() + b"\r\nconnection: close\r\n\r\n" + NO_HTTP_BACKEND)
                await writer.drain()
                return
            backend_reader, backend_writer = await asyncio.open_connection("127.0.0.1", port)
            backend_writer.write(head)
            await asyncio.gather(_pump(reader, backend_writer), _pump(backend_reader, writer))
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass  # a client or backend that hung up: nothing to relay any more
        finally:
            for w in (backend_writer, writer):
                if w is not None:
                    w.close()
            for w in (backend_writer, writer):  # bounded: a TLS peer that never answers close_notify
                if w is not None:
                    with contextlib.suppress(Exception, asyncio.CancelledError):
                        await asyncio.wait_for(w.wait_closed(), 1)

    async def _route(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> tuple[str, bytes]:
        """Which backend (``grpc`` or ``http``), and the bytes already read from the client."""
        ssl_object = writer.get_extra_info("ssl_object")
        alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        if alpn in ("grpc-exp", "h2"):
            return "grpc", b""
        if alpn == "http/1.1":
            return "http", b""
        head = b""
        while len(head) < len(HTTP2_PREFACE) and HTTP2_PREFACE.startswith(head):
            chunk = await reader.read(len(HTTP2_PREFACE) - len(head))
            if not chunk:
                break
            head += chunk
        return ("grpc" if head == HTTP2_PREFACE else "http"), head

    def stop(self) -> None:
        """Stop listening, drop open connections, end the loop's thread."""
        if not self._thread.is_alive():
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for task in list(self._tasks):
                task.cancel()
            if self._tasks:
                await asyncio.wait(list(self._tasks), timeout=3)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> FrontDoor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until end of stream, then half-close the other side (TLS cannot half-close: close it)."""
    try:
        while chunk := await reader.read(_CHUNK):
            writer.write(chunk)
            await writer.drain()
    finally:
        if writer.can_write_eof():
            with contextlib.suppress(OSError):
                writer.write_eof()
        else:
            writer.close()
