"""Django settings of the interop DOT server.  The environment carries what differs per run:
``DOT_BASE_URL`` (``http://127.0.0.1:PORT``), ``DOT_DB`` (the SQLite file) and ``DOT_RSA_KEY_FILE``
(the OIDC signing key, PEM)."""

from __future__ import annotations

import os
from pathlib import Path

BASE_URL = os.environ["DOT_BASE_URL"].rstrip("/")
HERE = Path(__file__).resolve().parent

SECRET_KEY = "interop-only-not-a-secret"  # a throwaway server on loopback
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "oauth2_provider",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.interop.dot.urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [str(HERE / "templates")],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["DOT_DB"],
                         "OPTIONS": {"timeout": 30}}}
USE_TZ = True
LOGIN_URL = "/accounts/login/"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
# The session and CSRF cookies work over plain http on loopback.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = False
LOGGING = {"version": 1, "disable_existing_loggers": False,
           "handlers": {"stderr": {"class": "logging.StreamHandler"}},
           "root": {"handlers": ["stderr"], "level": "WARNING"}}

#: Access tokens live ``DOT_ACCESS_TOKEN_SECONDS``; those of the rotation proof's client one second, so that
#: ten refreshes take seconds.
ACCESS_TOKEN_SECONDS = int(os.environ.get("DOT_ACCESS_TOKEN_SECONDS", "3600"))
SHORT_LIVED_CLIENTS = {"flyte-rotate": 1}


def access_token_seconds(request: object) -> int:
    """oauthlib's ``BearerToken`` takes ``expires_in`` as a number or a callable of the request."""
    return SHORT_LIVED_CLIENTS.get(str(getattr(request, "client_id", "")), ACCESS_TOKEN_SECONDS)


OAUTH2_PROVIDER = {
    "ACCESS_TOKEN_EXPIRE_SECONDS": access_token_seconds,
    "SCOPES": {"openid": "OpenID Connect", "all": "Flyte", "offline_access": "refresh tokens"},
    "DEFAULT_SCOPES": ["all"],
    "PKCE_REQUIRED": True,
    # A refresh returns a new refresh token and revokes the old one ...
    "ROTATE_REFRESH_TOKEN": True,
    # ... and presenting a revoked one again revokes the whole grant (RFC 9700 reuse detection).
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    # No grace period: a replay is a replay, however soon.
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
    "OIDC_ENABLED": True,
    "OIDC_ISS_ENDPOINT": f"{BASE_URL}/o",
    "OIDC_RSA_PRIVATE_KEY": Path(os.environ["DOT_RSA_KEY_FILE"]).read_text(),
    "OAUTH_DEVICE_VERIFICATION_URI": f"{BASE_URL}/o/device/",
    "OAUTH_DEVICE_VERIFICATION_URI_COMPLETE": lambda user_code: f"{BASE_URL}/o/device/?user_code={user_code}",
    "DEVICE_FLOW_INTERVAL": 1,
    "ALLOWED_REDIRECT_URI_SCHEMES": ["http", "https"],
}
