"""Names a doc block may use for the reader's own objects; in scope of every block the docs tests run.

A doc shows ``stub = MyServiceStub(channel)`` or ``session.intercept(my_channel)`` where the reader has
their own; here each stands for a real object pointed at the demo server (``flyteauth demo --serve``'s
``DemoFlyte``, found through ``$FLYTEAUTH_CONFIG``).  Keep this list short and documented
(CONTRIBUTING.md, "Docs that run").
"""

from __future__ import annotations

import os
from typing import Any

import grpc

from flyteauth_core import load_config
from flyteauth_core._proto.admin_pb2 import Projects
from flyteauth_core.testing import ADMIN

#: Only these reach a block: a block that forgets an import must fail here as it would for a reader.
__all__ = ["MyServiceStub", "my_aio_channel", "my_channel", "url"]

_config = load_config(os.environ["FLYTEAUTH_CONFIG"])
_host = _config.endpoint.removeprefix("dns:///")
_opened: list[Any] = []


class MyServiceStub:
    """A generated stub of your own service: here flyteadmin's ``ListProjects``."""

    def __init__(self, channel: grpc.Channel) -> None:
        self.ListProjects = channel.unary_unary(ADMIN["list_projects"], response_deserializer=Projects.FromString)


#: A grpc channel you built yourself (TLS, trusting the system roots: the docs tests point them at the demo CA).
my_channel = grpc.secure_channel(_host, grpc.ssl_channel_credentials())
_opened.append(my_channel)
#: An HTTP URL on the Flyte origin (flyteadmin's REST gateway).
url = f"https://{_host}/api/v1/projects"


def _aio_channel() -> Any:
    import grpc.aio

    channel = grpc.aio.secure_channel(_host, grpc.ssl_channel_credentials())
    _opened.append(channel)
    return channel


#: A grpc.aio channel you built yourself.
my_aio_channel = _aio_channel()


def _close() -> None:
    for channel in _opened:
        close = channel.close()
        if close is not None:  # grpc.aio: a coroutine; the loop that could await it may be gone
            close.close()
