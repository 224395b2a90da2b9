"""Platform token issuers on loopback: the peers that workload identity trusts, independent of the IdP.

* :class:`PlatformIssuer` ``kind="kubernetes"``: a cluster's service account issuer.  It mints
  Kubernetes-style tokens (``iss``, ``sub=system:serviceaccount:<ns>:<name>``, ``aud``, ``exp``, ``iat``,
  ``nbf``, ``jti``, ``kubernetes.io``) signed with its own RSA key, and serves
  ``/.well-known/openid-configuration`` and its JWKS at ``/openid/v1/jwks``, as an API server does.
  :meth:`write_projected` writes a token into a directory the way the kubelet's atomic writer does
  (a timestamped directory, ``..data`` symlink swapped by rename, ``token -> ..data/token``).
* ``kind="gcp"``: the GCP metadata server's identity endpoint (``GET /computeMetadata/v1/instance/
  service-accounts/default/identity?audience=<aud>&format=full`` with ``Metadata-Flavor: Google``; the ID
  token as text, ``sub`` the service account's numeric id, ``email`` its address; no header: 403).
  Point ``GCE_METADATA_HOST`` (google-auth's variable) at it.
* ``kind="github"``: GitHub Actions' token service.  ``GET /_apis/actions/idtoken?api-version=2.0
  &audience=<aud>`` with ``Authorization: bearer <request token>`` answers ``{"value": <jwt>}`` (sub
  ``repo:<org>/<repo>:ref:refs/heads/main``); a wrong or missing bearer gets 401.  Same discovery and JWKS.

The test IdP (``tests/idp/workload.mjs``) is told their issuer URLs and fetches their keys over HTTP.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flyteauth_core.testing import LoopbackHTTPServer, send_json

GITHUB_SUBJECT = "repo:flyteorg/flyteauth:ref:refs/heads/main"
GCP_IDENTITY_PATH = "/computeMetadata/v1/instance/service-accounts/default/identity"
GCP_SUBJECT = "104729834720198347561"
GCP_EMAIL = "workload@flyte-project.iam.gserviceaccount.com"


def send_text(handler: BaseHTTPRequestHandler, status: int, text: str) -> None:
    data = text.encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "text/html" if status == 200 else "text/plain")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class PlatformIssuer:
    """A loopback issuer of platform tokens (``kind``: ``kubernetes``, ``github`` or ``gcp``)."""

    def __init__(self, kind: str = "kubernetes") -> None:  # kubernetes, github or gcp
        from joserfc.jwk import RSAKey

        self.kind = kind
        self.key = RSAKey.generate_key(2048, parameters={"kid": uuid.uuid4().hex[:12], "use": "sig", "alg": "RS256"})
        #: GitHub: the runner's ACTIONS_ID_TOKEN_REQUEST_TOKEN.
        self.request_token = secrets.token_urlsafe(24)
        self.stats = {"id_token_requests": 0, "rejected": 0, "jwks": 0}
        self._lock = threading.Lock()
        self._server = LoopbackHTTPServer(self._get)
        self.issuer = self._server.url

    # -- urls ----------------------------------------------------------------------------------------
    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/openid/v1/jwks"

    @property
    def request_url(self) -> str:
        """GitHub: the runner's ACTIONS_ID_TOKEN_REQUEST_URL (already carries a query string)."""
        return f"{self.issuer}/_apis/actions/idtoken?api-version=2.0"

    # -- tokens --------------------------------------------------------------------------------------
    def mint(self, *, sub: str, aud: str | list[str], ttl: float = 600, exp: float | None = None,
             **extra: Any) -> str:
        from joserfc import jwt

        now = int(time.time())
        claims = {"iss": self.issuer, "sub": sub, "aud": aud, "iat": now, "nbf": now,
                  "exp": int(exp if exp is not None else now + ttl), "jti": uuid.uuid4().hex, **extra}
        header = {"alg": "RS256", "kid": self.key.kid, "typ": "JWT"}
        return jwt.encode(header, claims, self.key)

    def kubernetes_token(self, aud: str | list[str], *, namespace: str = "flyte", name: str = "workload",
                         ttl: float = 600, exp: float | None = None) -> str:
        return self.mint(sub=f"system:serviceaccount:{namespace}:{name}", aud=aud, ttl=ttl, exp=exp,
                         **{"kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": name}}})

    def write_projected(self, directory: Path, token: str, filename: str = "token") -> Path:
        """Write ``token`` as the kubelet does (atomic symlink swap); returns the token's path."""
        directory.mkdir(parents=True, exist_ok=True)
        stamp = directory / f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{uuid.uuid4().hex[:8]}"
        stamp.mkdir()
        (stamp / filename).write_text(token)
        tmp = directory / "..data_tmp"
        if tmp.is_symlink():
            tmp.unlink()
        os.symlink(stamp.name, tmp)
        os.replace(tmp, directory / "..data")
        link = directory / filename
        if not link.is_symlink():
            os.symlink(f"..data/{filename}", link)
        return link

    # -- http ----------------------------------------------------------------------------------------
    def _get(self, handler: BaseHTTPRequestHandler) -> None:
        url = urlsplit(handler.path)
        status, body = 404, {"error": "not found"}
        if url.path == "/.well-known/openid-configuration":
            status, body = 200, {"issuer": self.issuer, "jwks_uri": self.jwks_uri,
                                 "id_token_signing_alg_values_supported": ["RS256"]}
        elif url.path == "/openid/v1/jwks":
            with self._lock:
                self.stats["jwks"] += 1
            status, body = 200, {"keys": [self.key.as_dict(private=False)]}
        elif url.path == GCP_IDENTITY_PATH and self.kind == "gcp":
            with self._lock:
                self.stats["id_token_requests"] += 1
            audience = parse_qs(url.query).get("audience", [""])[0]
            if handler.headers.get("metadata-flavor") != "Google" or not audience:
                with self._lock:
                    self.stats["rejected"] += 1
                send_text(handler, 403 if audience else 400, "Missing Metadata-Flavor:Google header or audience")
                return
            send_text(handler, 200, self.mint(sub=GCP_SUBJECT, aud=audience, ttl=3600, email=GCP_EMAIL, azp=GCP_EMAIL))
            return
        elif url.path == "/_apis/actions/idtoken" and self.kind == "github":
            auth = handler.headers.get("authorization", "")
            scheme, _, value = auth.partition(" ")
            with self._lock:
                self.stats["id_token_requests"] += 1
            if scheme.lower() != "bearer" or not secrets.compare_digest(value, self.request_token):
                with self._lock:
                    self.stats["rejected"] += 1
                status, body = 401, {"message": "Bad credentials"}
            else:
                audience = parse_qs(url.query).get("audience", ["https://github.com/flyteorg"])[0]
                status, body = 200, {"value": self.mint(sub=GITHUB_SUBJECT, aud=audience, ttl=300,
                                                        repository="flyteorg/flyteauth")}
        send_json(handler, status, body)

    def start(self) -> PlatformIssuer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> PlatformIssuer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
