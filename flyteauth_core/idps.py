"""The identity providers Flyte users run, recognised from their URLs, and what each one needs.

Every IdP deviates from the RFCs somewhere, and Flyte's issue tracker holds the cost: Entra ID wants one
``api://<app>/.default`` scope and no ``audience``; Keycloak enforces PKCE on the device flow and gives
refresh tokens only for ``offline_access``; Auth0 issues an opaque access token unless the request names an
API (``audience``); Okta's custom authorization servers live under ``/oauth2/<id>`` and, like Keycloak, need
``offline_access``.  This module knows them in one place:

* :func:`recognise` tells the IdP from a token endpoint or issuer URL (host, or the path shape a
  self-hosted or custom-domain install keeps), or from ``idpProfile`` when neither shows it;
* :class:`IdpProfile` says how a token request is shaped for it (:meth:`IdpProfile.shape_token_form`) and
  what to tell a user when something fails (:meth:`IdpProfile.hints`), in the user's own config keys;
* :func:`explain_aadsts` turns Entra's ``AADSTSnnnnn`` codes into what they mean and what to change.

The grant providers apply the request shaping; ``flyteauth doctor`` and the error hints use the rest.  It
is pure string work: no I/O and no imports beyond the standard library, so both may call it freely.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

import attrs

from .options import Option
from .parsers import boolean, string

KINDS = ("entra", "keycloak", "auth0", "okta", "google", "generic")


def _kind(key: str, value: object) -> str | None:
    text = (string(key, value) or "").strip().lower()
    if text and text not in KINDS:
        from .errors import ConfigError

        raise ConfigError(f"{key} {value!r} is not one of {', '.join(KINDS)}",
                          hint="Set it to one of them, or remove it to recognise the IdP from its URL")
    return text or None


def _tristate(key: str, value: object) -> bool | None:
    """``auto`` (None), or a boolean."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    return boolean(key, value)


#: ``admin.idpProfile``: which IdP's quirks apply when its URL does not show it (a custom domain).
IDP_PROFILE = Option(
    "idpProfile", parse=_kind,
    help="the IdP's kind when its URL does not show it (custom domains): entra, keycloak, auth0, okta, "
    "google or generic (default: recognised from the token endpoint)",
)
#: ``admin.devicePkce``: send PKCE in the device flow (auto: when the IdP needs it).
DEVICE_PKCE = Option(
    "devicePkce", parse=_tristate,
    help="device flow: send a PKCE code_challenge (S256) and code_verifier: true, false or auto (default: "
    "Keycloak, or when the IdP asks for it)",
)


_ENTRA_HOSTS = ("login.microsoftonline.com", "login.microsoftonline.us", "login.chinacloudapi.cn",
                "login.partner.microsoftonline.cn", "login.windows.net", "sts.windows.net")
_OKTA_SUFFIXES = (".okta.com", ".oktapreview.com", ".okta-emea.com", ".okta-gov.com")
_KEYCLOAK_PATH = re.compile(r"(^|/)realms/[^/]+(/|$)")
_OKTA_CUSTOM_PATH = re.compile(r"^/oauth2/(?!v1/)[^/]+(/|$)")
_OKTA_ORG_PATH = re.compile(r"^/oauth2/v1/")
_ENTRA_V2_PATH = re.compile(r"^/[^/]+/(oauth2/)?v2\.0(/|$)")


@attrs.frozen
class IdpProfile:
    """One IdP kind and the facts about a URL of it that change how we talk to it."""

    kind: str = "generic"
    #: The name users know it by, for messages.
    display: str = "an OAuth2 server"
    #: Entra: the ``v1`` (``/oauth2/token``, takes ``resource``) or ``v2`` endpoint (``/oauth2/v2.0/token``).
    entra_version: str = ""
    #: Okta: the org authorization server (its access tokens are for Okta's own APIs only).
    okta_org_server: bool = False
    #: How it was recognised (``host``, ``path``, ``idpProfile``), for doctor.
    source: str = ""

    @property
    def needs_offline_access(self) -> bool:
        """Keycloak and Okta hand out refresh tokens only to logins that ask for ``offline_access``."""
        return self.kind in ("keycloak", "okta")

    @property
    def takes_audience(self) -> bool:
        """Entra ID refuses an ``audience`` parameter: the API is named by the scope (v2) or ``resource`` (v1)."""
        return self.kind != "entra"

    @property
    def device_pkce(self) -> bool:
        """Keycloak clients with PKCE enforced refuse a device authorization without a code challenge."""
        return self.kind == "keycloak"

    def shape_token_form(self, data: Mapping[str, str], *, grant: str) -> dict[str, str]:
        """The token request form as this IdP wants it.

        Entra v2 takes no ``audience`` (nor ``resource``) and, for client credentials, exactly one scope
        ``<application id URI>/.default``: an audience with no such scope becomes that scope.  Entra v1 takes
        the API as ``resource`` instead.  Everything else passes through unchanged.
        """
        form = dict(data)
        if self.kind != "entra":
            return form
        audience = form.pop("audience", "") or ""
        scopes = form.get("scope", "").split()
        if self.entra_version == "v1":
            resource = audience or next((s[: -len("/.default")] for s in scopes if s.endswith("/.default")), "")
            if resource:
                form["resource"] = resource
            return form
        if grant == "client_credentials" and not any(s.endswith("/.default") for s in scopes) and audience:
            form["scope"] = audience.rstrip("/") + "/.default"
        return form

    def check_client_credentials_scopes(self, scopes: tuple[str, ...], has_audience: bool) -> str | None:
        """What is wrong with these scopes for a client credentials request here, or None."""
        if self.kind != "entra" or self.entra_version == "v1":
            return None
        defaults = [s for s in scopes if s.endswith("/.default")]
        if len(defaults) == 1 and len(scopes) == 1:
            return None
        if not defaults and has_audience:
            return None  # shape_token_form turns the audience into the scope
        if defaults:
            return (f"Entra ID's client credentials grant takes exactly one scope, {defaults[0]!r}; the others "
                    f"({' '.join(s for s in scopes if s not in defaults)}) make it fail with AADSTS70011")
        return ("Entra ID's client credentials grant takes one scope of the form api://<application id>/.default, "
                f"not {' '.join(scopes) or 'none'} (AADSTS1002012)")

    def refresh_hint(self, scopes: tuple[str, ...], scopes_key: str = "admin.scopes") -> str | None:
        """Why a login here brought no refresh token, when this IdP explains it (Keycloak, Okta)."""
        if self.needs_offline_access and "offline_access" not in scopes:
            return (f"{self.display} gives refresh tokens only to logins that ask for offline_access: add it to "
                    f"{scopes_key} (and allow it for the client), or every expiry needs a new login")
        return None

    def hints(self, *, has_audience: bool, scopes: tuple[str, ...], interactive: bool,
              refresh_token: bool | None = None, opaque_token: bool | None = None,
              audience_in_token: bool | None = None, scopes_key: str = "admin.scopes",
              audience_key: str = "admin.audience") -> list[str]:
        """What this IdP needs that the config or the token it issued shows is missing, as fixes in the
        user's own keys.  ``None`` for a fact means "not known yet"."""
        out: list[str] = []
        if self.kind == "auth0" and not has_audience and opaque_token is not False:
            out.append(f"Auth0 issues an opaque access token unless the request names an API: set {audience_key} "
                       "to the Auth0 API identifier of Flyte (unless the tenant sets a Default Audience)")
        if self.kind == "entra" and self.entra_version != "v1" and not interactive:
            problem = self.check_client_credentials_scopes(scopes, has_audience)
            if problem:
                out.append(f"{problem}: set {scopes_key}: [api://<application id of the Flyte API>/.default]")
        if self.kind == "okta" and self.okta_org_server:
            out.append("this is Okta's org authorization server (/oauth2/v1/...), whose access tokens only Okta's "
                       "own APIs accept: use a custom authorization server (/oauth2/default or /oauth2/<id>) in "
                       "admin.tokenUrl or the Flyte server's auth config")
        if interactive and refresh_token is False:
            missing = self.refresh_hint(scopes, scopes_key)
            if missing:
                out.append(missing)
        if self.kind == "keycloak" and audience_in_token is False:
            out.append("Keycloak puts the Flyte API in the token's aud only through an audience mapper: add an "
                       "'Audience' mapper (included client audience: the Flyte client) to the client's dedicated "
                       f"scope, and set {audience_key} to the same value")
        return out


def recognise(url: str | None, declared: str | None = None) -> IdpProfile:
    """The IdP behind a token endpoint, authorization endpoint or issuer URL.

    ``declared`` (``idpProfile``) wins; otherwise the host tells Entra, Okta, Auth0 and Google, and the path
    tells a self-hosted Keycloak (``/realms/<realm>``), an Okta custom domain (``/oauth2/<server id>``) and
    Entra's v2 endpoints.  Unknown URLs are ``generic``: nothing is changed for them.
    """
    parts = urlsplit(url or "")
    host = (parts.hostname or "").lower()
    path = parts.path or ""
    kind, source = "generic", ""
    if declared:
        kind = _kind("idpProfile", declared) or "generic"
        source = "idpProfile"
    elif host in _ENTRA_HOSTS or host.endswith(".ciamlogin.com") or _ENTRA_V2_PATH.search(path):
        kind, source = "entra", "host" if host in _ENTRA_HOSTS or host.endswith(".ciamlogin.com") else "path"
    elif host.endswith(_OKTA_SUFFIXES):
        kind, source = "okta", "host"
    elif host.endswith(".auth0.com"):
        kind, source = "auth0", "host"
    elif host in ("accounts.google.com", "oauth2.googleapis.com", "sts.googleapis.com"):
        kind, source = "google", "host"
    elif _KEYCLOAK_PATH.search(path):
        kind, source = "keycloak", "path"
    elif _OKTA_CUSTOM_PATH.search(path) and "/v1/" in path:
        kind, source = "okta", "path"
    display = {"entra": "Entra ID", "keycloak": "Keycloak", "auth0": "Auth0", "okta": "Okta",
               "google": "Google"}.get(kind, "an OAuth2 server")
    version = ""
    if kind == "entra":
        version = "v2" if "/v2.0" in path or not path.rstrip("/").endswith(("/oauth2/token", "/oauth2/authorize",
                                                                             "/oauth2/devicecode")) else "v1"
    org = kind == "okta" and bool(_OKTA_ORG_PATH.search(path))
    return IdpProfile(kind=kind, display=display, entra_version=version, okta_org_server=org, source=source)


# The AADSTS codes Flyte users meet, with what they mean and what to change.  Entra's own text says what
# failed; this says which key to change.
_AADSTS: dict[str, str] = {
    "7000215": "the client secret is wrong (or is the secret's ID, not its value): copy the secret's Value into "
               "the file or variable admin.clientSecretLocation / clientSecretEnvVar names",
    "7000222": "the client secret has expired: create a new one in the app registration",
    "700016": "no application with this client id exists in the tenant: check admin.clientId and the tenant in "
              "admin.tokenUrl",
    "90002": "the tenant in admin.tokenUrl does not exist: use the tenant (directory) id",
    "70011": "the scope is not valid: client credentials take exactly one scope, api://<application id>/.default",
    "1002012": "client credentials need a scope ending in /.default: set admin.scopes: "
               "[api://<application id>/.default]",
    "901002": "the v2.0 endpoint takes no 'resource' or 'audience': put the API in admin.scopes as "
              "api://<application id>/.default and remove admin.audience",
    "500011": "the resource (the api://... in admin.scopes) is not an application in this tenant: use the "
              "Application ID URI of the Flyte API's app registration",
    "700027": "the client assertion's signature or certificate was not accepted: upload the certificate to the "
              "app registration and set admin.clientCertFilePath to it (its thumbprint goes in the x5t#S256 "
              "header)",
    "700024": "the client assertion is outside its valid time range: synchronise this machine's clock",
    "7000218": "the request has no client secret or assertion: the app registration is a confidential client, "
               "or enable 'Allow public client flows' for Pkce and DeviceFlow",
    "65001": "the user or an administrator has not consented to the app's permissions: grant admin consent "
             "for the API permissions in the app registration",
    "50076": "multi-factor authentication is required: run `flyteauth login` to sign in interactively",
    "50079": "multi-factor authentication enrolment is required: run `flyteauth login` to sign in interactively",
    "700082": "the refresh token expired after inactivity: run `flyteauth login`",
    "50173": "the grant was revoked (a password change or an administrator): run `flyteauth login`",
    "70043": "the refresh token expired under a conditional access policy: run `flyteauth login`",
    "50011": "the redirect URI is not registered: add http://localhost:53593/callback as a Mobile and desktop "
             "redirect URI of the app registration",
    "7000112": "the application is disabled in the tenant",
}
_AADSTS_CODE = re.compile(r"AADSTS(\d{5,7})")


def explain_aadsts(text: str | None) -> str | None:
    """``AADSTS<code>: <what it means>: <what to change>`` for the first Entra code in ``text``, or None."""
    match = _AADSTS_CODE.search(text or "")
    if match is None:
        return None
    code = match.group(1)
    meaning = _AADSTS.get(code)
    if meaning is None:
        return (f"AADSTS{code} is Entra ID's error code: look it up at "
                f"https://login.microsoftonline.com/error?code={code}")
    return f"AADSTS{code}: {meaning}"
