"""A third-party provider, shipped as its own distribution ("acme-flyteauth")."""

from flyteauth_core import Token, hookimpl

FIXED_TOKEN = "acme-fixed-token"


class AcmeAuthenticator:
    def __init__(self, config):
        # plugins read their own keys from the raw admin section
        self.tenant = config.options.get("acmeTenant", "none")

    def acquire(self, request):
        return Token(access_token=FIXED_TOKEN, expires_at=4102444800.0, scopes=(f"tenant:{self.tenant}",))


@hookimpl
def flyteauth_register_authenticators(register):
    register("Acme", AcmeAuthenticator, aliases=("acme-corp",))
