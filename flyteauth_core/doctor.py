"""``flyteauth doctor``: walk the auth chain one link at a time and say which link is broken.

When auth fails, the error a user sees comes from the last link (the server said UNAUTHENTICATED, the
IdP said invalid_client) and says little about the link that is really broken.  The doctor checks the
links in order and stops at the first that fails, printing for each what it found, how long it took
and, on failure, what to do and which config key to change:

1. config     the config loads; offline checks (files, env vars, commands; see config_report)
2. endpoint   the Flyte endpoint resolves, accepts TCP, and speaks TLS (or plaintext) as configured
3. discovery  which AuthMetadataService (v2, v1, RFC 8414) answered; header key, token endpoint
4. idp        the IdP's token endpoint answers over HTTP(S), through the configured proxy and trust
5. token      a token is obtained (or a stored login reused); grant, client auth, lifetime, claims
6. call       one authenticated call (IdentityService.UserInfo v2/v1): accepted, rejected (and why),
              or unreachable

Interactive providers never open a browser here: the session is built with ``interactive=False``, so
a stored login is reused and otherwise step 5 stops with "run `flyteauth login`".  The exit code is the
number of the first failing step (0 when all pass).  The token itself is never printed or stored.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import ssl
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, TextIO

import attrs

from . import claims as jwt_claims
from .config_report import Problem, canonical_key, check, config_file, user_key
from .errors import (
    CommandError,
    DiscoveryError,
    FlyteAuthError,
    InteractionRequired,
    InvalidClientError,
    InvalidGrantError,
    TokenRequestError,
)
from .idps import IDP_PROFILE, IdpProfile, recognise

if TYPE_CHECKING:
    from .config import AuthConfig
    from .discovery import ServerAuthInfo
    from .session import AuthSession

log = logging.getLogger("flyteauth.doctor")
Status = Literal["ok", "warn", "fail", "skipped", "not run"]
STEPS = ("config", "endpoint", "discovery", "idp", "token", "call")
#: The ALPN protocols that mean HTTP/2 to a gRPC client: grpcio and grpc-core offer "grpc-exp" before "h2".
_GRPC_ALPN = ("grpc-exp", "h2")

#: Auth types whose token does not come from an OAuth2 token endpoint (no IdP step).
_NO_IDP = frozenset({"externalcommand", "passthrough", "noauth"})
_IDP_TYPES = frozenset({"clientsecret", "pkce", "deviceflow"})
_GRANTS = {"clientsecret": "client_credentials", "pkce": "authorization_code (PKCE)",
           "deviceflow": "device_code", "externalcommand": "external command", "passthrough": "handed in"}
_SERVICES = {"grpc v2": "flyteidl2.auth.AuthMetadataService (v2)",
             "grpc v1": "flyteidl.service.AuthMetadataService (v1)",
             "rfc8414": "HTTP /.well-known/oauth-authorization-server (RFC 8414)"}
#: Clock differences above this are reported as skew (most servers allow 30-60 s of leeway).
SKEW_LIMIT = 60.0


@attrs.frozen
class StepResult:
    """One link of the chain: what was found, how long it took, and what to do when it failed."""

    number: int
    name: str
    status: Status
    seconds: float = 0.0
    summary: str = ""
    details: dict[str, Any] = attrs.field(factory=dict)
    fix: str | None = None
    key: str | None = None
    #: The config key's state: "unset" (it needs a value) or "wrong" (its value does not work).
    key_state: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


class _Fail(Exception):
    """A step failed: the summary, what to do, and the config key to change (if one is to blame)."""

    def __init__(self, summary: str, fix: str, key: str | None = None, state: str | None = None,
                 **details: Any) -> None:
        super().__init__(summary)
        self.summary, self.fix, self.key, self.state, self.details = summary, fix, key, state, details


class _Warn(Exception):
    """A step passed with a caveat worth reading."""

    def __init__(self, summary: str, fix: str | None = None, key: str | None = None, **details: Any) -> None:
        super().__init__(summary)
        self.summary, self.fix, self.key, self.details = summary, fix, key, details


def _host_port(target: str, plaintext: bool) -> tuple[str, int]:
    """``(host, port)`` from a gRPC target (``dns:///h:p``, ``h:p``, ``[::1]:p``)."""
    if target.startswith("dns:"):
        target = target[4:].lstrip("/")
    host, sep, port = target.rpartition(":")
    if not sep or not port.isdigit() or (host.startswith("[") != host.endswith("]")):
        host, port = target, "80" if plaintext else "443"
    return host.strip("[]"), int(port)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _cert_names(host: str, port: int, timeout: float) -> dict[str, str]:
    """Subject, issuer and validity of the certificate a server presents, fetched without verifying."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock, \
                context.wrap_socket(sock, server_hostname=host) as tls:
            der = tls.getpeercert(binary_form=True)
    except (OSError, ValueError):
        return {}
    if not der:
        return {}
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der)
    return {"subject": cert.subject.rfc4514_string(), "issuer": cert.issuer.rfc4514_string(),
            "not_after": cert.not_valid_after_utc.isoformat()}


class Doctor:
    """Runs the steps; ``on_step`` sees each result as soon as it is known (for streaming output)."""

    def __init__(self, config_path: str | None = None, *, timeout: float = 10.0,
                 env: dict[str, str] | None = None) -> None:
        self.config_path = config_path
        self.timeout = timeout
        self.env = dict(os.environ) if env is None else env
        self.config: AuthConfig | None = None
        self.session: AuthSession | None = None
        self.server: ServerAuthInfo | None = None
        self.sent_key: str | None = None

    # -- driver -----------------------------------------------------------------------------------------
    def run(self, on_step: Callable[[StepResult], None] | None = None) -> list[StepResult]:
        checks: list[Callable[[], tuple[str, dict[str, Any]]]] = [
            self.check_config, self.check_endpoint, self.check_discovery, self.check_idp, self.check_token,
            self.check_call,
        ]
        results: list[StepResult] = []
        failed = False
        try:
            for number, (name, check) in enumerate(zip(STEPS, checks, strict=True), start=1):
                if failed:
                    result = StepResult(number, name, "not run")
                else:
                    result = self._timed(number, name, check)
                    failed = result.status == "fail"
                results.append(result)
                if on_step is not None:
                    on_step(result)
        finally:
            if self.session is not None:
                self.session.close()
        return results

    @staticmethod
    def _timed(number: int, name: str, check: Callable[[], tuple[str, dict[str, Any]]]) -> StepResult:
        started = time.perf_counter()
        try:
            summary, details = check()
        except _Fail as fail:
            return StepResult(number, name, "fail", time.perf_counter() - started, fail.summary, fail.details,
                              fail.fix, fail.key, fail.state)
        except _Warn as warn:
            return StepResult(number, name, "warn", time.perf_counter() - started, warn.summary, warn.details,
                              warn.fix, warn.key)
        except _Skip as skip:
            return StepResult(number, name, "skipped", time.perf_counter() - started, str(skip))
        except Exception as exc:  # a bug or an unforeseen failure: report it as this step, keep the walk typed
            log.debug("flyteauth doctor: step %s failed unexpectedly", name, exc_info=True)
            return StepResult(number, name, "fail", time.perf_counter() - started,
                              f"unexpected {type(exc).__name__} (its message may hold a secret, so it is not "
                              "shown; run `flyteauth -v doctor` for the traceback)", fix="Report this as a bug")
        return StepResult(number, name, "ok", time.perf_counter() - started, summary, details)

    # -- 1. config --------------------------------------------------------------------------------------
    def check_config(self) -> tuple[str, dict[str, Any]]:
        from .http import RetryPolicy
        from .session import AuthSession

        # The one list `flyteauth config` prints, with the same severities: an error fails this step, a
        # warning (a misspelt key, a secret file others can read) is shown and every network step still runs.
        config, found = check(self.config_path, env=self.env)
        if config is None:
            first = found[-1]  # what stopped the load; values rejected before it are listed below
            raise _Fail(first.message + (f" (and {len(found) - 1} more below)" if len(found) > 1 else ""),
                        first.fix, first.key, first.state,
                        **({"problems": [attrs.asdict(p) for p in (first, *found[:-1])]} if len(found) > 1 else {}))
        self.config = config
        details: dict[str, Any] = {"file": config_file(config) or "(none)", "auth_type": config.resolved_auth_type,
                                   "auth_type_reason": config.auth_type_reason}
        errors = [p for p in found if p.severity == "error"]
        if errors:
            first = errors[0]
            details["problems"] = [attrs.asdict(p) for p in found]
            more = f" (and {len(found) - 1} more below)" if len(found) > 1 else ""
            raise _Fail(first.message + more, first.fix, first.key, first.state, **details)
        try:
            # No interactive flows; one attempt per IdP call: the doctor reports, it does not wait out outages.
            self.session = AuthSession(config, interactive=False, retry=RetryPolicy(attempts=1))
            auth_type = self.session.auth_type  # wires the provider and the store (a missing extra fails here)
        except FlyteAuthError as error:
            raise _Fail(error.message, error.hint or "Fix the setting named above", **details) from None
        # "explicit authType (<file>:admin.authType)" would say authType twice on one line
        reason = re.sub(r"^explicit authType \((.*?)\)", r"set by \1", config.auth_type_reason)
        summary = f"{details['file']}; authType {auth_type} ({reason})"
        if found:
            details["problems"] = [attrs.asdict(p) for p in found]
        if found and found[0].severity == "warning":
            first_warning: Problem = found[0]
            raise _Warn(f"{summary}; {first_warning.message}", first_warning.fix, first_warning.key, **details)
        return summary, details

    # -- 2. endpoint ------------------------------------------------------------------------------------
    def check_endpoint(self) -> tuple[str, dict[str, Any]]:
        config = self._config()
        key = user_key(config, "endpoint")
        if config.grpc_target.startswith(("unix:", "unix-abstract:")):
            raise _Skip(f"{config.grpc_target} is a unix socket; not probed")
        host, port = _host_port(config.grpc_target, config.use_plaintext)
        details: dict[str, Any] = {"endpoint": config.endpoint, "host": host, "port": port}
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise _Fail(f"{key} names host {host!r}, which does not resolve ({exc.strerror})",
                        f"Fix the host name in {key} (now {config.endpoint!r}), or check DNS", key, "wrong",
                        **details) from None
        details["addresses"] = sorted({str(info[4][0]) for info in infos})
        try:
            sock = socket.create_connection((host, port), timeout=self.timeout)
        except ConnectionRefusedError:
            raise _Fail(f"nothing listens on {host}:{port} (connection refused)",
                        f"Check the port in {key} (now {config.endpoint!r})", key, "wrong", **details) from None
        except OSError as exc:
            reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__)
            raise _Fail(f"cannot connect to {host}:{port} ({reason})",
                        f"Check {key} (now {config.endpoint!r}) and that a firewall or proxy lets you through",
                        key, "wrong", **details) from None
        with sock:
            if config.use_plaintext:
                details["transport"] = "plaintext (" + (user_key(config, "insecure") if config.insecure
                                                        else f"{key} is http://") + ")"
                self._probe_plaintext(sock, host, port, config)
                return f"{host}:{port} accepts TCP; plaintext HTTP/2", details
            return self._check_tls(sock, host, port, config, details)

    def _probe_plaintext(self, sock: socket.socket, host: str, port: int, config: AuthConfig) -> None:
        """An HTTP/2 server answers the client preface with a SETTINGS frame; anything else is named."""
        key = user_key(config, "insecure")
        try:
            sock.settimeout(self.timeout)
            sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            head = sock.recv(9)
        except OSError:
            head = b""
        if len(head) >= 4 and head[3] == 0x04:  # SETTINGS
            return
        if _cert_names(host, port, self.timeout) or head[:1] == b"\x15":
            raise _Fail(f"{host}:{port} speaks TLS, but the config asks for plaintext",
                        f"Set {key}: false (or remove it)", key, "wrong")
        endpoint = user_key(config, "endpoint")
        what = "answers HTTP/1.x" if head.startswith(b"HTTP/") else "does not answer the HTTP/2 preface"
        raise _Fail(f"{host}:{port} {what}: not a gRPC server", f"Check the port in {endpoint}", endpoint, "wrong")

    def _check_tls(self, sock: socket.socket, host: str, port: int, config: AuthConfig,
                   details: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        skip = config.insecure_skip_verify
        if skip:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        else:
            try:
                context = ssl.create_default_context(cafile=os.path.expanduser(config.ca_cert_file_path)
                                                     if config.ca_cert_file_path else None)
            except (OSError, ssl.SSLError) as exc:
                key = user_key(config, "ca_cert_file_path")
                raise _Fail(f"{key} cannot be loaded as CA certificates ({type(exc).__name__})",
                            f"Point {key} at a PEM file of CA certificates", key, "wrong", **details) from None
        # what grpcio offers ("grpc-exp" first), so a front door that routes gRPC by ALPN (an ingress, the
        # demo) answers as it would answer a gRPC client; "http/1.1" last, so a web port is named, not refused
        context.set_alpn_protocols([*_GRPC_ALPN, "http/1.1"])
        sock.settimeout(self.timeout)
        try:
            with context.wrap_socket(sock, server_hostname=host) as tls:
                details["tls"] = tls.version()
                details["alpn"] = tls.selected_alpn_protocol()
                cert = tls.getpeercert(binary_form=True)
        except ssl.SSLCertVerificationError as exc:
            names = _cert_names(host, port, self.timeout)
            details.update(names)
            key = user_key(config, "ca_cert_file_path")
            state = "wrong" if config.ca_cert_file_path else "unset"
            shown = f"subject {names.get('subject', '?')}, issuer {names.get('issuer', '?')}"
            raise _Fail(f"the certificate of {host}:{port} is not trusted ({exc.verify_message}; {shown})",
                        f"Set {key} to a PEM file of the CA that issued it ({names.get('issuer', 'see above')})"
                        + ("" if state == "unset" else f"; the one it names now ({config.ca_cert_file_path}) "
                           "did not verify it"), key, state, **details) from None
        except (ssl.SSLError, OSError) as exc:
            key = user_key(config, "insecure")
            raise _Fail(f"TLS handshake with {host}:{port} failed ({type(exc).__name__}: "
                        f"{getattr(exc, 'reason', None) or exc}); the server may be plaintext",
                        f"If the server is plaintext, set {key}: true; otherwise check the port in "
                        f"{user_key(config, 'endpoint')}", key, "unset" if not config.insecure else "wrong",
                        **details) from None
        if cert:
            from cryptography import x509

            parsed = x509.load_der_x509_certificate(cert)
            details.update(subject=parsed.subject.rfc4514_string(), issuer=parsed.issuer.rfc4514_string(),
                           not_after=parsed.not_valid_after_utc.isoformat())
        summary = f"{host}:{port} accepts TCP; {details['tls']}" + (
            f", certificate {details.get('subject', '')} not verified ({user_key(config, 'insecure_skip_verify')})"
            if skip else f", certificate {details.get('subject', '')} trusted")
        if details.get("alpn") not in _GRPC_ALPN:
            raise _Warn(f"{summary}; the server did not agree to HTTP/2 (ALPN {details.get('alpn')!r})",
                        "gRPC needs HTTP/2: check that the endpoint is the gRPC port, not a web port",
                        user_key(config, "endpoint"), **details)
        return summary, details

    # -- 3. discovery -----------------------------------------------------------------------------------
    def check_discovery(self) -> tuple[str, dict[str, Any]]:
        config, session = self._config(), self._session()
        try:
            info = session.server_info()
        except DiscoveryError as error:
            if config.token_url and config.authorization_header:
                raise _Warn(f"{error.message}; not needed, since {user_key(config, 'token_url')} and "
                            f"{user_key(config, 'authorization_header')} are set") from None
            raise _Fail(error.message, error.hint or "Check admin.endpoint", user_key(config, "endpoint"),
                        "wrong") from None
        self.server = info
        # One service, or one per RPC when a server answers them differently ("grpc v2 + rfc8414").
        service = " + ".join(_SERVICES.get(part, part) for part in info.source.split(" + "))
        details = {"service": service, "header_key": info.authorization_metadata_key,
                   "token_endpoint": info.token_endpoint or "(none)", "client_id": info.client_id or "(none)",
                   "audience": info.audience or "(none)", "scopes": list(info.scopes)}
        summary = (f"{service} answered; header key {info.authorization_metadata_key!r}, token endpoint "
                   f"{info.token_endpoint or '(none)'}")
        configured = config.authorization_header
        if configured and configured.lower() != info.authorization_metadata_key.lower():
            key = user_key(config, "authorization_header")
            raise _Warn(f"{summary}; but {key} sends the token under {configured!r}",
                        f"Remove {key} unless a proxy in between renames the header", key, **details)
        return summary, details

    # -- 4. the IdP -------------------------------------------------------------------------------------
    def _token_url(self) -> tuple[str, str]:
        """The token endpoint and where it came from (a key as the user wrote it, or discovery)."""
        config = self._config()
        if config.token_url:
            return config.token_url, user_key(config, "token_url")
        if self.server is not None and self.server.token_endpoint:
            return self.server.token_endpoint, "the server's discovery"
        return "", ""

    def _idp_profile(self) -> IdpProfile:
        """The IdP behind the token endpoint (``admin.idpProfile``, else its URL): its quirks name the fixes."""
        url, _ = self._token_url()
        try:
            return recognise(url, IDP_PROFILE.read(self._config()))
        except FlyteAuthError:
            return recognise(url)  # a bad idpProfile is step 1's problem, not this one's

    def _with_quirks(self, fix: str, error: FlyteAuthError | None = None, **facts: Any) -> str:
        """``fix``, preceded by what an Entra AADSTS code means and by the IdP's quirks that fit the facts."""
        profile = self._idp_profile()
        config = self._config()
        hint = error.hint if error is not None else None
        parts: list[str] = [hint] if hint and hint.startswith("AADSTS") else []
        kind = self._session().auth_type.lower()
        facts.setdefault("interactive", kind in ("pkce", "deviceflow"))
        parts += profile.hints(has_audience=bool(config.audience or (self.server.audience if self.server else "")),
                               scopes=tuple(config.scopes or (self.server.scopes if self.server else ())),
                               scopes_key=user_key(config, "scopes"), audience_key=user_key(config, "audience"),
                               **facts)
        return "; ".join([*parts, *([fix] if fix else [])])

    def check_idp(self) -> tuple[str, dict[str, Any]]:
        config, session = self._config(), self._session()
        kind = session.auth_type.lower()
        if session.anonymous or kind in _NO_IDP:
            raise _Skip(f"authType {session.auth_type} gets its token without an IdP")
        url, origin = self._token_url()
        if not url:
            if kind not in _IDP_TYPES:
                raise _Skip(f"no token endpoint known; authType {session.auth_type} may not need one")
            raise _Fail("no token endpoint: admin.tokenUrl is unset and the server advertises none",
                        "Set admin.tokenUrl to the IdP's token endpoint", "admin.tokenUrl", "unset")
        proxy, proxy_key = self._proxy_for(url, config)
        details: dict[str, Any] = {"url": url, "from": origin, "proxy": proxy or "direct"}
        profile = self._idp_profile()
        if profile.kind != "generic":
            details["idp"] = profile.display + (f" {profile.entra_version}" if profile.entra_version else "")
        if url.startswith("https://"):
            details["tls"] = ("not verified (" + user_key(config, "idp_insecure_skip_verify") + ")"
                              if config.idp_insecure_skip_verify else "verified")
        token_key = user_key(config, "token_url") if config.token_url else canonical_key("token_url")
        started = time.time()
        response = self._reach_idp(config, url, (proxy, proxy_key), token_key, details)
        details["status"] = response.status_code
        date = response.headers.get("date")
        if date:
            import email.utils

            try:
                offset = email.utils.parsedate_to_datetime(date).timestamp() - (started + time.time()) / 2
                details["idp_clock_offset_s"] = round(offset, 1)
            except (TypeError, ValueError):
                pass
        summary = f"{url} is reachable (HTTP {response.status_code} to a GET)" + (f" via {proxy}" if proxy else "")
        if "idp" in details:
            summary += f"; {details['idp']}"
        if response.status_code == 407:
            key = user_key(config, "proxy_auth_for_idp")
            raise _Fail(f"{summary}: the proxy wants credentials", f"Put them in {proxy_key or 'the proxy URL'}, or "
                        f"set {key}: true to send the proxyCommand token to it", key, None, **details)
        # 501 to a GET is "method not implemented": a POST-only token endpoint that is up (http.server's answer)
        if response.status_code >= 500 and response.status_code != 501:
            raise _Fail(f"{summary}: the IdP has a server error", "Try again later, or ask the IdP's operators",
                        **details)
        if abs(details.get("idp_clock_offset_s", 0.0)) > SKEW_LIMIT:
            raise _Warn(f"{summary}; this machine's clock differs from the IdP's by "
                        f"{details['idp_clock_offset_s']:+.0f} s", "Synchronise this machine's clock (NTP)",
                        **details)
        differs = self._token_url_differs()
        if differs:
            raise _Warn(f"{summary}; {differs}", f"Remove {token_key} unless the server's advertised endpoint is "
                        "wrong (then both should be fixed)", token_key, **details)
        return summary, details

    def _token_url_differs(self) -> str:
        """What to say when the configured token endpoint is not the one discovery returned ("" if it is)."""
        config = self._config()
        advertised = self.server.token_endpoint if self.server is not None else ""
        if not config.token_url or not advertised or config.token_url.rstrip("/") == advertised.rstrip("/"):
            return ""
        return (f"{user_key(config, 'token_url')} ({config.token_url}) is not the token endpoint the server "
                f"advertises ({advertised})")

    def _reach_idp(self, config: AuthConfig, url: str, proxy_and_key: tuple[str, str], token_key: str,
                   details: dict[str, Any]) -> Any:
        """GET the token endpoint (any HTTP answer means reachable); a failure names the key to fix."""
        import httpx2

        from .http import HttpClientFactory, _tls_verify_failure

        proxy, proxy_key = proxy_and_key
        where = details["from"] if config.token_url else f"advertised by the server; {token_key} overrides it"
        try:
            with HttpClientFactory(config).client(url) as http:
                response = http.get(url, timeout=self.timeout)
        except httpx2.ProxyError as exc:
            raise _Fail(f"the proxy {proxy} refused or failed the connection to {url} ({type(exc).__name__})",
                        f"Check {proxy_key}", proxy_key, "wrong", **details) from None
        except httpx2.TransportError as exc:
            reason = _tls_verify_failure(exc)
            if reason is not None:
                host, port = _host_port(url.split("://", 1)[1].split("/", 1)[0], False)
                details.update(_cert_names(host, port, self.timeout))
                key = user_key(config, "idp_ca_cert_file_path")
                raise _Fail(f"the IdP's certificate at {url} is not trusted ({reason}; subject "
                            f"{details.get('subject', '?')}, issuer {details.get('issuer', '?')})",
                            f"Set {key} to a PEM file of the CA that issued it ({key} is for the IdP; "
                            f"{user_key(config, 'ca_cert_file_path')} is for the Flyte endpoint only)", key,
                            "wrong" if config.idp_ca_cert_file_path else "unset", **details) from None
            what = "timed out" if isinstance(exc, httpx2.TimeoutException) else type(exc).__name__
            if proxy and isinstance(exc, httpx2.ConnectError):  # the first hop is the proxy itself
                raise _Fail(f"the proxy {proxy} for IdP calls is unreachable ({what})",
                            f"Check {proxy_key}, or unset it to connect directly", proxy_key, "wrong",
                            **details) from None
            differs = self._token_url_differs()
            if differs:  # the likeliest cause: a tokenUrl the server would not have sent us to
                raise _Fail(f"the IdP at {url} ({where}) is unreachable ({what}); {differs}",
                            f"Remove {token_key} to use the advertised endpoint, or correct it", token_key,
                            "wrong", **details) from None
            raise _Fail(f"the IdP at {url} ({where}) is unreachable ({what}"
                        + (f", via proxy {proxy}" if proxy else "") + ")",
                        f"Check that the IdP is up and reachable from here; {token_key} sets the token endpoint"
                        + (f", {proxy_key} the proxy" if proxy else ", admin.httpProxyURL a proxy"),
                        token_key, "wrong" if config.token_url else None, **details) from None
        return response

    def _proxy_for(self, url: str, config: AuthConfig) -> tuple[str, str]:
        """The proxy IdP calls go through (credentials masked) and the key or variable that sets it."""
        from .config_report import format_value

        if config.http_proxy_url:
            return format_value("http_proxy_url", config.http_proxy_url), user_key(config, "http_proxy_url")
        import urllib.request

        host = url.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]
        if urllib.request.proxy_bypass(host):
            return "", ""
        scheme = url.split(":", 1)[0]
        for var in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY", "all_proxy", "ALL_PROXY"):
            if self.env.get(var):
                return format_value("http_proxy_url", self.env[var]), f"${var}"
        return "", ""

    # -- 5. the token -----------------------------------------------------------------------------------
    def check_token(self) -> tuple[str, dict[str, Any]]:
        config, session = self._config(), self._session()
        kind = session.auth_type.lower()
        if session.anonymous:
            raise _Skip(f"authType {session.auth_type} sends no token")
        try:
            token = session.get_token()
        except FlyteAuthError as error:
            raise self._token_failure(error) from None
        now = time.time()
        stats = session.manager.stats
        details: dict[str, Any] = {
            "grant": "stored login" if stats.loaded_from_store else _GRANTS.get(kind, session.auth_type),
            "format": "opaque",
        }
        if kind == "clientsecret":
            details["client_auth"] = config.token_endpoint_auth_method
        elif kind in ("pkce", "deviceflow"):
            details["client_auth"] = "none (public client)"
            details["refresh_token"] = bool(token.refresh_token)
        if token.expires_at is not None:
            details["lifetime_s"] = round(token.expires_at - now)
        details["scopes"] = list(token.scopes)
        payload = jwt_claims.unverified_claims(token.access_token)
        if payload:
            details["format"] = "JWT"
            details["scopes"] = details["scopes"] or list(jwt_claims.scopes(payload))
            details["audience"] = list(jwt_claims.audiences(payload))
            for claim in ("iss", "sub", "client_id", "iat", "exp"):
                if claim in payload:
                    details[claim] = payload[claim]
        lifetime = f"{details['lifetime_s']} s" if "lifetime_s" in details else "unknown lifetime"
        summary = (f"{details['grant']}" + (f", {details['client_auth']}" if "client_auth" in details else "")
                   + f"; {details['format']}, {lifetime}, scopes {' '.join(details['scopes']) or '(none)'}"
                   + (f", aud {' '.join(details['audience']) or '(none)'}" if payload else ""))
        self._warn_on_quirks(summary, details, bool(payload))
        iat = payload.get("iat")
        if isinstance(iat, (int, float)) and iat - now > SKEW_LIMIT:
            raise _Warn(f"{summary}; the token was issued {iat - now:.0f} s in the future by this machine's "
                        "clock", "Synchronise this machine's clock (NTP)", **details)
        if token.expires_at is not None and token.expires_at <= now:
            raise _Fail(f"{summary}; the token is already expired by this machine's clock",
                        "Synchronise this machine's clock (NTP), or check the IdP's token lifetime", **details)
        return summary, details

    def _warn_on_quirks(self, summary: str, details: dict[str, Any], jwt: bool) -> None:
        """A token came, but what the IdP handed out shows one of its quirks (opaque for lack of an audience,
        no refresh token for lack of offline_access, no audience mapper): a warning with the fix."""
        config = self._config()
        expected = config.audience or (self.server.audience if self.server else "")
        quirks = self._with_quirks("", refresh_token=details.get("refresh_token"), opaque_token=not jwt,
                                   audience_in_token=(expected in details["audience"]) if jwt and expected else None)
        if quirks:
            raise _Warn(f"{summary}; {self._idp_profile().display} needs more", quirks, **details)

    def _token_failure(self, error: FlyteAuthError) -> _Fail:
        """Step 5's failure for ``error``, naming the key to change."""
        config, session = self._config(), self._session()
        if isinstance(error, InteractionRequired):
            return _Fail(f"authType {session.auth_type} needs a login in a browser or with a device code, and "
                         "no stored login is usable; the doctor does not open a browser",
                         "Run `flyteauth login`, then run `flyteauth doctor` again",
                         error=error.message)
        if isinstance(error, InvalidClientError):
            key, state = self._credential_key(config)
            fix = (f"Check the secret {key} provides (and {user_key(config, 'client_id')}, "
                   f"{user_key(config, 'token_endpoint_auth_method')} = {config.token_endpoint_auth_method})")
            summary, differs = self._idp_said(f"the IdP rejected client {config.client_id!r}: {error.message}", error)
            if differs and self.server is not None:  # the likelier cause: another IdP does not know this client
                key, state = user_key(config, "token_url"), "wrong"
                fix = f"Remove {key} to use the advertised {self.server.token_endpoint}; if it is right: {fix}"
            return _Fail(summary, self._with_quirks(fix, error), key, state, **self._said_details(error))
        if isinstance(error, InvalidGrantError):
            return _Fail(f"the stored login is no longer valid ({error.message})", "Run `flyteauth login`")
        if isinstance(error, TokenRequestError):
            key, fix = {"invalid_scope": ("scopes", "Ask for scopes the IdP grants this client"),
                         "invalid_target": ("audience", "Set it to an audience the IdP knows"),
                         "unauthorized_client": ("auth_type", "This client may not use this grant at the IdP"),
                         }.get(error.error or "", ("", error.hint or "See the IdP's message above"))
            summary, differs = self._idp_said(error.message, error)
            if differs and self.server is not None:  # the likelier cause: a token endpoint of another IdP
                key, fix = "token_url", f"Remove it to use the advertised {self.server.token_endpoint}"
            named = user_key(config, key) if key else None
            return _Fail(summary, self._with_quirks(f"{named}: {fix}" if named else fix, error), named,
                         "wrong" if named and getattr(config, key) else ("unset" if named else None),
                         **self._said_details(error))
        if isinstance(error, CommandError):
            key = user_key(config, "command")
            return _Fail(error.message, error.hint or f"Run the command in {key} by hand and fix it", key,
                         "wrong")
        return _Fail(error.message, error.hint or "See the message")

    def _idp_said(self, summary: str, error: TokenRequestError) -> tuple[str, str]:
        """``summary`` with the IdP's own words (masked and cut short by the provider) and, when the configured
        token endpoint is not the advertised one, that too; and the latter alone ("" when they agree)."""
        if error.idp_message and error.idp_message not in summary:
            summary += f"; the IdP said: {error.idp_message}"
        differs = self._token_url_differs()
        return (f"{summary}; {differs}" if differs else summary), differs

    @staticmethod
    def _said_details(error: TokenRequestError) -> dict[str, Any]:
        return {"idp_message": error.idp_message} if error.idp_message else {}

    def _credential_key(self, config: AuthConfig) -> tuple[str, str]:
        if config.token_endpoint_auth_method == "private_key_jwt":
            return user_key(config, "client_key_file_path"), "wrong"
        for field in ("client_secret", "client_secret_env_var", "client_secret_location"):
            if getattr(config, field):
                return user_key(config, field), "wrong"
        return canonical_key("client_secret_location"), "wrong"

    # -- 6. one authenticated call ----------------------------------------------------------------------
    def check_call(self) -> tuple[str, dict[str, Any]]:
        import grpc

        from .discovery import USERINFO_PATHS

        session = self._session()
        metadata = tuple(session.interceptor.metadata())
        self.sent_key = next((k for k, v in metadata if v.lower().startswith("bearer ")), None)
        v1_only = self.server is not None and "grpc v1" in self.server.source and "grpc v2" not in self.server.source
        versions = ("v1", "v2") if v1_only else ("v2", "v1")
        details: dict[str, Any] = {"header_key": self.sent_key or "(no token sent)"}
        unimplemented = []
        for version in versions:
            try:
                reply = self._userinfo(version, metadata)
            except grpc.RpcError as error:
                code = error.code()
                if code is grpc.StatusCode.UNIMPLEMENTED:
                    unimplemented.append(version)
                    continue
                details.update(version=version, code=code.name, server_message=error.details() or "")
                if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                    self._diagnose_rejection(version, metadata, details)
                if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                    raise _Fail(f"the server is unreachable for the authenticated call ({code.name}: "
                                f"{error.details()}); the token was not judged",
                                "Step 2 reached it, so something in the path fails under load or rejects "
                                "authenticated calls (a proxy? check admin.proxyCommand); try again",
                                **details) from None
                raise _Fail(f"IdentityService.UserInfo ({version}) failed with {code.name}: {error.details()}",
                            "See the server's message", **details) from None
            service = USERINFO_PATHS[version].rsplit("/", 1)[0].lstrip("/")
            details.update(version=version, subject=reply.subject, name=reply.name or reply.preferred_username)
            who = reply.preferred_username or reply.name or reply.email
            return (f"{service}.UserInfo accepted the token: subject {reply.subject!r}"
                    + (f" ({who})" if who and who != reply.subject else ""), details)
        raise _Warn("the server implements no IdentityService.UserInfo (v1 or v2), so the token could not be tried",
                    "Make any authenticated call (e.g. `flytectl get projects`) to check the server's side",
                    **details)

    def _userinfo(self, version: str, metadata: tuple[tuple[str, str], ...]) -> Any:
        from ._proto import UserInfoRequest, UserInfoResponse
        from .discovery import USERINFO_PATHS

        channel = self._session()._raw()
        call = channel.unary_unary(USERINFO_PATHS[version], request_serializer=UserInfoRequest.SerializeToString,
                                   response_deserializer=UserInfoResponse.FromString)
        return call(UserInfoRequest(), metadata=metadata, timeout=self.timeout)

    def _diagnose_rejection(self, version: str, metadata: tuple[tuple[str, str], ...],
                            details: dict[str, Any]) -> None:
        """Raise a _Fail naming the likeliest cause: header key, audience, clock, or the server itself."""
        import grpc

        config = self._config()
        message = details.get("server_message", "")
        seen = f"{details['code']}: {message}" if message else details["code"]
        advertised_key = self.server.authorization_metadata_key if self.server else None
        advertised_aud = self.server.audience if self.server else ""
        token_value = next((v for k, v in metadata if k == self.sent_key), None)
        payload = jwt_claims.unverified_claims(token_value[7:] if token_value else None)
        aud = jwt_claims.audiences(payload)
        now = time.time()
        details.update(advertised_header_key=advertised_key, token_audience=list(aud),
                       advertised_audience=advertised_aud or None, local_time=int(now))
        for claim in ("iat", "nbf", "exp"):
            if claim in payload:
                details[f"token_{claim}"] = payload[claim]
        if token_value is None:
            key = user_key(config, "auth_type")
            raise _Fail(f"the server requires a token ({seen}), but authType {self._session().auth_type} sends "
                        "none", f"Set {key} to the auth type the server's IdP supports", key, "wrong", **details)
        # 1. header key: try the same token under the other keys a Flyte server may read.
        if token_value is not None and self.sent_key is not None:
            candidates = [advertised_key, "flyte-authorization", "authorization"]
            others = [(k, v) for k, v in metadata if k != self.sent_key]
            for candidate in dict.fromkeys(c for c in candidates if c and c != self.sent_key):
                try:
                    self._userinfo(version, (*others, (candidate, token_value)))
                except grpc.RpcError:
                    continue
                key = user_key(config, "authorization_header")
                state = "wrong" if config.authorization_header else "unset"
                raise _Fail(f"the server rejected the token under {self.sent_key!r} ({seen}) and accepted it "
                            f"under {candidate!r}: it reads another header key",
                            f"Set {key}: {candidate}" if state == "unset" or candidate != advertised_key
                            else f"Remove {key} (now {config.authorization_header!r}) or set it to {candidate!r}, "
                            "the key the server advertises", key, state, tried_header_key=candidate, **details)
        # 2. audience: what the token carries against what the server advertises (or says).
        if advertised_aud and advertised_aud not in aud:
            key, state = self._audience_key(config)
            raise _Fail(f"the server rejected the token ({seen}): its audience is {list(aud) or '(none)'}, the "
                        f"server expects {advertised_aud!r}",
                        self._with_quirks(f"Set {key}: {advertised_aud} (or admin.useAudienceFromAdmin: true)",
                                          opaque_token=not payload, audience_in_token=False),
                        key, state, **details)
        if re.search(r"\baud(ience)?\b", message, re.I):
            key, state = self._audience_key(config)
            raise _Fail(f"the server rejected the token's audience {list(aud) or '(none)'} ({seen})",
                        self._with_quirks(f"Set {key} to the audience the server expects (see its message)",
                                          opaque_token=not payload, audience_in_token=False),
                        key, state, **details)
        # 3. clock: the token's validity window against this machine's clock (the server's is unknown).
        iat, nbf, exp = (payload.get(c) for c in ("iat", "nbf", "exp"))
        numbers = [v for v in (iat, nbf) if isinstance(v, (int, float))]
        if (numbers and max(numbers) - now > SKEW_LIMIT) or (isinstance(exp, (int, float)) and exp <= now) or \
                re.search(r"expired|not (yet )?valid|\bnbf\b|\biat\b|clock", message, re.I):
            raise _Fail(f"the server rejected the token ({seen}); its validity (iat {iat}, nbf {nbf}, exp {exp}) "
                        f"against this machine's clock ({int(now)}) suggests clock skew",
                        "Synchronise the clocks of this machine, the IdP and the server (NTP)", **details)
        raise _Fail(f"the server rejected the token ({seen}); header key {self.sent_key!r} (server advertises "
                    f"{advertised_key!r}), audience {list(aud) or '(none)'} (server advertises "
                    f"{advertised_aud or 'none'}), issuer {payload.get('iss', '?')}",
                    self._with_quirks("Compare these with the server's auth settings (audience, issuer, header key); "
                                      "its logs say which check failed", opaque_token=not payload),
                    **details)

    def _audience_key(self, config: AuthConfig) -> tuple[str, str]:
        return user_key(config, "audience"), "wrong" if config.audience else "unset"

    # -- helpers ----------------------------------------------------------------------------------------
    def _config(self) -> AuthConfig:
        assert self.config is not None
        return self.config

    def _session(self) -> AuthSession:
        assert self.session is not None
        return self.session


class _Skip(Exception):
    """The step does not apply to this config (e.g. no IdP for ExternalCommand)."""


def exit_code(results: list[StepResult]) -> int:
    """The number of the first failing step; 0 when none failed."""
    return next((r.number for r in results if r.status == "fail"), 0)


def render_step(result: StepResult) -> str:
    """One step for a terminal: ``[n/6] name  STATUS  time  summary``; for a failure or warning also the fix
    and the values seen (``--json`` carries the details of every step)."""
    label = {"ok": "ok", "warn": "WARN", "fail": "FAIL", "skipped": "skip", "not run": "-"}[result.status]
    head = f"[{result.number}/{len(STEPS)}] {result.name:<9} {label:<4}"
    if result.status == "not run":
        return f"{head}  not run"
    lines = [f"{head} {_ms(result.seconds):>7}  {result.summary}"]
    if result.fix:
        lines.append(f"      fix: {result.fix}" + (f"  [{result.key}: {result.key_state}]"
                                                   if result.key and result.key_state else ""))
    for name, value in result.details.items():
        if result.name == "config" and name in ("file", "auth_type", "auth_type_reason") and (
                f"authType {result.details.get('auth_type')} (" in result.summary):
            continue  # the summary line says them
        if name == "problems":
            for problem in value[1:] if result.status in ("fail", "warn") else value:  # the first is the summary
                lines += [f"      {problem['severity']}: {problem['message']}", f"        fix: {problem['fix']}"]
        elif value not in ("", None, []) and result.status in ("warn", "fail"):  # `--json` has them all
            lines.append(f"      {name}: {value}")
    return "\n".join(lines)


@contextmanager
def _quiet_warnings() -> Iterator[None]:
    """The doctor reports config problems itself; the loader's log lines would repeat them."""
    import logging

    logger = logging.getLogger("flyteauth.config")
    before = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(before)


def main(config_path: str | None, *, as_json: bool = False, out: TextIO | None = None,
         timeout: float = 10.0) -> int:
    """``flyteauth doctor``: print each step as it finishes (or all of them as JSON); exit code = first failure."""
    out = out or sys.stdout
    doctor = Doctor(config_path, timeout=timeout)

    def show(result: StepResult) -> None:
        if not as_json:
            print(render_step(result), file=out, flush=True)

    with _quiet_warnings():
        results = doctor.run(show)
    code = exit_code(results)
    if as_json:
        json.dump({"ok": code == 0, "exit_code": code, "steps": [r.to_dict() for r in results]}, out, indent=2,
                  default=str)
        print(file=out)
    elif code:
        print(f"\nstep {code} ({STEPS[code - 1]}) failed; fix it and run `flyteauth doctor` again", file=out)
    else:
        print("\nall steps passed", file=out)
    return code
