"""Adapters that plug flyteauth into the SDKs Flyte users run, each behind an extra and its SDK's own hook.

* :mod:`flyteauth_integrations.flytekit`: ``authType: flyteauth`` for flytekit >= 1.16.24 (entry point
  ``flyteauth`` in the ``flytekit.auth`` group; install ``flyteauth[flytekit]``).
* flyte 2.x, flytectl, the Go clients and older flytekit: ``authType: ExternalCommand`` with
  ``command: [flyteauth, token]`` (see ``flyteauth_core/commands/token.py``).
* :mod:`flyteauth_integrations.flyte`: flyte 2.x code that builds its own clients gets flyte's ``ClientSet``
  (and ``flyte.init``'s client) authenticated by an ``AuthSession`` (no extra beyond flyte itself).

Nothing here is imported by ``flyteauth_core``.
"""
