"""Thin adapters that carry an :class:`~flyteauth_core.protocols.Interceptor` onto a transport.

``grpc_sync`` (a channel wrapper plus an interceptor form), ``grpc_aio`` (one interceptor object per
call kind) and ``httpx_auth`` (an ``httpx2.Auth``).  Each is imported only when used.
"""
