"""The Connect peers for ``compare.py`` (flyte 2.x) and ``run.py`` (section 5): ``DemoTokenEndpoint`` plus
the tests' real Connect server (``tests/_connect_server.py``: connectrpc's ASGI applications serving
flyteidl2's ``AuthMetadataService`` and ``IdentityService`` behind uvicorn on 127.0.0.1)."""

from __future__ import annotations

import sys
from pathlib import Path

if str(Path(__file__).resolve().parent.parent) not in sys.path:
    sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from flyteauth_core.testing import DemoTokenEndpoint
from tests._connect_server import ConnectTestServer

__all__ = ["ConnectPeers", "ConnectTestServer"]


class ConnectPeers:
    """Same shape as ``_peers.Peers`` (``endpoint``, ``server.stats``, ``target``), Connect instead of gRPC."""

    def __init__(self, client_id: str, client_secret: str, ttl: float, reject_all: bool = False) -> None:
        self.endpoint = DemoTokenEndpoint(client_id, client_secret, ttl=ttl).start()
        try:
            validate = (lambda token: "wrong audience") if reject_all else self.endpoint.validate
            self.server = ConnectTestServer(validate, token_endpoint=self.endpoint.url).start()
        except BaseException:
            self.endpoint.stop()
            raise
        self.target = self.server.target

    def close(self) -> None:
        self.server.stop()
        self.endpoint.stop()

    def __enter__(self) -> ConnectPeers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
