"""The providers and stores that ship with flyteauth.

Each module registers itself through the ``flyteauth`` entry points in ``pyproject.toml``, exactly as a
third-party plugin would; nothing in ``flyteauth_core`` imports these modules by name.
"""
