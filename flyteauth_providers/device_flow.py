"""``DeviceFlow``: the OAuth2 device authorization grant (RFC 8628), for machines without a browser.

The code is shown through a prompt callback: by default a message on stderr; an SDK or notebook passes its
own (constructor ``prompt=``, or ``AuthConfig(options={"deviceFlowPrompt": fn})`` from code), which gets a
:class:`DeviceCode`.  Polling waits ``interval`` seconds between requests (the IdP's, else
``deviceFlowConfig.pollInterval``, default 5 s), adds 5 s on every ``slow_down`` (RFC 8628 §3.5), and ends
with a typed error on ``expired_token`` (:class:`LoginExpiredError`), ``access_denied``
(:class:`LoginDeniedError`) or after ``deviceFlowConfig.timeout`` (default 10 minutes, or the code's own
lifetime if shorter: :class:`LoginTimeoutError`).  Refresh tokens and the non-interactive rule live in
:mod:`._interactive`.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from flyteauth_core import hookimpl
from flyteauth_core.config import AuthConfig
from flyteauth_core.errors import ConfigError, TokenRequestError, TokenResponseError
from flyteauth_core.idps import DEVICE_PKCE
from flyteauth_core.lifecycle import AcquireRequest
from flyteauth_core.token import Token

from ._interactive import (
    INTERACTIVE_OPTIONS,
    InteractiveAuthenticator,
    LoginDeniedError,
    LoginError,
    LoginExpiredError,
    LoginTimeoutError,
    PublicClient,
)
from ._oauth import idp_profile, post_form, raise_for_error

log = logging.getLogger("flyteauth.device_flow")

SLOW_DOWN_STEP = 5.0  # RFC 8628 §3.5
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"


@attrs.frozen
class DeviceCode:
    """What the user needs to see.  The device code itself (the secret half) is not in here."""

    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float | None
    interval: float
    endpoint: str


Prompt = Callable[[DeviceCode], Any]


def print_prompt(code: DeviceCode) -> None:
    """The default prompt: two lines on stderr."""
    if code.verification_uri_complete:
        text = (f"To log in to {code.endpoint}, open {code.verification_uri_complete}\n"
                f"  (or go to {code.verification_uri} and enter the code {code.user_code})")
    else:
        text = f"To log in to {code.endpoint}, go to {code.verification_uri} and enter the code {code.user_code}"
    print(text, file=sys.stderr, flush=True)


class DeviceFlowAuthenticator(InteractiveAuthenticator):
    """Shows a link and a code, then polls until the user has approved the login somewhere else."""

    flow_name = "device code"

    def __init__(self, config: AuthConfig, *, prompt: Prompt | None = None) -> None:
        super().__init__(config)
        configured = config.options.get("deviceFlowPrompt")
        self._prompt = prompt or (configured if callable(configured) else None)
        # admin.deviceFlowConfig.timeout / .pollInterval, parsed by load_config
        self.timeout = config.device_flow_timeout
        self.poll_interval = config.device_flow_poll_interval
        #: How many ``slow_down`` answers the last login honoured (for reports and tests).
        self.slow_downs = 0
        self.polls = 0

    def login(self, request: AcquireRequest, client: PublicClient) -> Token:
        url = client.device_authorization_endpoint
        if not url:
            raise ConfigError(f"{self._config.endpoint} advertises no device authorization endpoint",
                              hint="Use authType Pkce, or fix the server's auth config")
        form = {
            "client_id": client.client_id,  # RFC 8628 §3.1 (public clients send it in the form)
            "scope": " ".join(client.scopes),
            "audience": client.audience or "",
        }
        # PKCE on the device flow (Keycloak enforces it on clients that require PKCE): a code_challenge in the
        # device authorization request, the code_verifier in every poll.  "auto" sends it where the IdP is
        # known to need it, and once more with it when an IdP refuses the request for lack of one.
        wanted = DEVICE_PKCE.read(self._config)
        verifier = _pkce_verifier() if wanted or (wanted is None and idp_profile(self._config, url).device_pkce) else ""
        status, body = post_form(request, url, {**form, **_challenge(verifier)})
        if status == 400 and not verifier and wanted is None and _asks_for_pkce(body):
            log.info("flyteauth: %s wants PKCE on the device flow; asking again with a code challenge", url)
            verifier = _pkce_verifier()
            status, body = post_form(request, url, {**form, **_challenge(verifier)})
        if status != 200:
            raise_for_error(_Answer(status, body), url)
        device_code, shown = self._parse(body, url, status)
        (request.device_prompt or self._prompt or print_prompt)(shown)  # AuthSession(device_prompt=...) first
        return self._poll(request, client, device_code, shown, verifier)

    def _parse(self, body: Any, url: str, status: int) -> tuple[str, DeviceCode]:
        if not isinstance(body, Mapping):
            raise TokenResponseError("Device authorization response is not a JSON object",
                                     endpoint=url, status=status)
        fields = {k: body.get(k) for k in ("device_code", "user_code", "verification_uri")}
        missing = [k for k, v in fields.items() if not isinstance(v, str) or not v]
        if missing:
            raise TokenResponseError(f"Device authorization response lacks {', '.join(missing)}",
                                     endpoint=url, status=status)
        complete = body.get("verification_uri_complete")
        expires_in: Any = body.get("expires_in")
        interval: Any = body.get("interval")
        return str(fields["device_code"]), DeviceCode(
            user_code=str(fields["user_code"]),
            verification_uri=str(fields["verification_uri"]),
            verification_uri_complete=complete if isinstance(complete, str) and complete else None,
            expires_in=float(expires_in) if _number(expires_in) else None,
            interval=float(interval) if _number(interval) and interval > 0 else self.poll_interval,
            endpoint=self._config.endpoint,
        )

    def _poll(self, request: AcquireRequest, client: PublicClient, device_code: str, shown: DeviceCode,
              verifier: str = "") -> Token:
        timeout = min(self.timeout, shown.expires_in) if shown.expires_in else self.timeout
        deadline = time.monotonic() + timeout
        interval = shown.interval
        self.slow_downs = self.polls = 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LoginTimeoutError(
                    f"Nobody approved the device login within {timeout:g}s",
                    hint="Run `flyteauth login` again and approve it sooner, or raise admin.deviceFlowConfig"
                    ".timeout",
                )
            if self._cancelled.wait(min(interval, remaining)):
                raise LoginError("The login was cancelled (the session closed)")
            if time.monotonic() >= deadline:
                continue
            self.polls += 1
            try:
                return self.exchange(request, client, {"grant_type": GRANT_TYPE, "device_code": device_code,
                                                       "code_verifier": verifier})
            except TokenRequestError as exc:
                if exc.error == "authorization_pending":
                    continue
                if exc.error == "slow_down":
                    interval += SLOW_DOWN_STEP
                    self.slow_downs += 1
                    log.debug("flyteauth: device flow asked to slow down; polling every %gs", interval)
                    continue
                if exc.error == "expired_token":
                    raise LoginExpiredError("The device code expired before the login was approved",
                                            error=exc.error) from None
                if exc.error == "access_denied":
                    raise LoginDeniedError("The device login was denied", error=exc.error) from None
                raise


def _pkce_verifier() -> str:
    from authlib.common.security import generate_token

    return str(generate_token(64))


def _challenge(verifier: str) -> dict[str, str]:
    if not verifier:
        return {}
    from authlib.oauth2.rfc7636 import create_s256_code_challenge

    return {"code_challenge": create_s256_code_challenge(verifier), "code_challenge_method": "S256"}


def _asks_for_pkce(body: Any) -> bool:
    """An ``invalid_request`` whose description names PKCE or the code challenge (Keycloak: "Missing parameter:
    code_challenge_method", "PKCE enforced Client without code challenge method.")."""
    if not isinstance(body, Mapping) or body.get("error") != "invalid_request":
        return False
    text = str(body.get("error_description") or "").lower()
    return "pkce" in text or "code_challenge" in text or "code challenge" in text


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@attrs.frozen
class _Answer:
    """Just enough of a response for ``raise_for_error``."""

    status_code: int
    body: Any
    headers: Mapping[str, str] = attrs.Factory(dict)

    def json(self) -> Any:
        if self.body is None:
            raise ValueError("no JSON body")
        return self.body


@hookimpl
def flyteauth_register_authenticators(register: Any) -> None:
    register("DeviceFlow", DeviceFlowAuthenticator, aliases=("device_flow",), default_store="keyring",
             options=(*INTERACTIVE_OPTIONS, DEVICE_PKCE))
