"""A third-party provider ("idp-flyteauth") that gets real tokens: a client-credentials grant of its own,
against a token URL and secret file named by its own config keys.  Used behind flytekit's plugin hook."""

import json
import time
import urllib.parse
import urllib.request
from base64 import b64encode

from flyteauth_core import Token, hookimpl

CLIENT_ID = "ci-basic"


class AcmeIdpAuthenticator:
    def __init__(self, config):
        self.token_url = config.options["acmeTokenUrl"]
        self.secret_file = config.options["acmeSecretFile"]

    def acquire(self, request):
        with open(self.secret_file) as fh:
            secret = fh.read().strip()
        basic = b64encode(f"{CLIENT_ID}:{secret}".encode()).decode()
        body = urllib.parse.urlencode({"grant_type": "client_credentials"}).encode()
        req = urllib.request.Request(self.token_url, data=body, headers={"Authorization": f"Basic {basic}"})
        with urllib.request.urlopen(req, timeout=10) as response:
            reply = json.loads(response.read())
        return Token(access_token=reply["access_token"], expires_at=time.time() + float(reply["expires_in"]))


@hookimpl
def flyteauth_register_authenticators(register):
    register("AcmeIdp", AcmeIdpAuthenticator)
