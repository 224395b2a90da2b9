"""A second distribution ("acme-fork-flyteauth") that claims the name "Acme" too, plus one of its own."""

from flyteauth_core import Token, hookimpl


class ForkAuthenticator:
    def __init__(self, config):
        pass

    def acquire(self, request):
        return Token(access_token="fork-token")


@hookimpl
def flyteauth_register_authenticators(register):
    register("Acme", ForkAuthenticator)
    register("AcmeFork", ForkAuthenticator, aliases=("acme-fork",))
