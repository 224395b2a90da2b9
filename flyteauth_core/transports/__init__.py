"""Thin adapters that carry an :class:`~flyteauth_core.protocols.Interceptor` onto a transport.

``grpc_sync`` (a channel wrapper plus an interceptor form), ``grpc_aio`` (a channel wrapper plus one
interceptor object per call kind), ``connect`` (ConnectRPC interceptors) and ``httpx_auth`` (an
``httpx2.Auth``, and the clients that keep its headers on allowed origins across redirects).  All drive
``flow``; each is imported only when used.
"""
