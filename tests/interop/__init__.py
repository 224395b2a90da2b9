"""The interop suite: flyteauth against OAuth2/OIDC servers nobody here wrote (issue 18)."""
