"""Run the interop DOT server: ``python -m tests.interop.dot.serve PORT DIR``.

Migrates ``DIR/dot.sqlite3``, creates the user and the applications in :data:`CLIENTS`, then serves on
127.0.0.1:PORT with waitress and prints one line, ``READY``, once it accepts connections.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

USER = ("flyte-user", "interop-password-1")
#: client_id -> (client_type, grant type, secret or "") of each application the suite uses.
CLIENTS = {
    "flyte-cc": ("confidential", "client-credentials", "flyte-cc-secret-0123456789"),
    "flyte-pkce": ("public", "authorization-code", ""),
    "flyte-device": ("public", "urn:ietf:params:oauth:grant-type:device_code", ""),
    # the rotation proof's client: 1-second access tokens (settings.SHORT_LIVED_CLIENTS)
    "flyte-rotate": ("public", "urn:ietf:params:oauth:grant-type:device_code", ""),
}
#: Loopback redirect of the PKCE client: DOT accepts any port on it (RFC 8252 §7.3).
REDIRECT_URI = "http://127.0.0.1/callback"


def _rsa_key(path: Path) -> None:
    if path.exists():
        return
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def _provision() -> None:
    from django.contrib.auth import get_user_model
    from oauth2_provider.models import get_application_model

    user_model = get_user_model()
    if not user_model.objects.filter(username=USER[0]).exists():
        user_model.objects.create_user(USER[0], password=USER[1])
    application = get_application_model()
    for client_id, (client_type, grant, secret) in CLIENTS.items():
        if application.objects.filter(client_id=client_id).exists():
            continue
        application.objects.create(
            client_id=client_id, name=client_id, client_type=client_type, authorization_grant_type=grant,
            client_secret=secret, redirect_uris=REDIRECT_URI if grant == "authorization-code" else "",
            algorithm="RS256", skip_authorization=False,
        )


def main() -> None:
    port, directory = int(sys.argv[1]), Path(sys.argv[2])
    directory.mkdir(parents=True, exist_ok=True)
    _rsa_key(directory / "oidc.pem")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.interop.dot.settings")
    os.environ["DOT_BASE_URL"] = f"http://127.0.0.1:{port}"
    os.environ["DOT_DB"] = str(directory / "dot.sqlite3")
    os.environ["DOT_RSA_KEY_FILE"] = str(directory / "oidc.pem")

    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    _provision()

    from django.core.wsgi import get_wsgi_application
    from waitress.server import create_server

    server = create_server(get_wsgi_application(), host="127.0.0.1", port=port, threads=8,
                           ident="dot-interop")
    print("READY", flush=True)
    server.run()


if __name__ == "__main__":
    main()
