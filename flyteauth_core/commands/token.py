"""``flyteauth token``: a credential helper for every ExternalCommand client (flyte 2.x, flytectl and the Go
clients, flytekit's ExternalCommand, ``curl -H "Authorization: Bearer $(flyteauth token)"``).

Those clients run the command once and again only after the server rejects the token, so the helper must
be cheap on every call and hand out tokens that live long enough to be useful:

* **Warm path.**  The access token is cached in a 0600 file (the file store's format and lock, under
  ``helper/`` in ``$FLYTEAUTH_TOKEN_DIR`` or ``~/.config/flyteauth/tokens``, every directory created 0700;
  ``flyteauth logout`` clears it), keyed on the credential's identity (``flyteauth_core.identity``) in two
  steps, so the warm path parses no config: a *selector* digests what chooses the config (the config files
  on the search path, their paths and bytes, ``--config``, the ``FLYTE*``/``UCTL*`` environment, HOME and
  the uid); beside it an *inputs* file lists what else the identity was read from when it was last
  computed (a platform token file or env var, GitHub's ``ACTIONS_ID_TOKEN_REQUEST_*``, a
  ``platformTokenCommand``).  The token's key digests the selector with what each input gives now (a
  token's ``iss``/``sub``/``aud``: stable when it rotates, different for another job's identity), so on a
  runner whose HOME persists, job B is never printed job A's token.  While the cached token has
  ``--min-valid`` seconds left it is printed without parsing YAML, loading plugins, or importing authlib,
  httpx2, grpc or protobuf; reading a token file and decoding its claims is the only extra work (a
  ``platformTokenCommand`` is run, since only its output says whose token it is).
* **Cold path, single flight.**  Otherwise the helper takes the cache entry's file lock, looks again (a
  concurrent invocation may have just refreshed it), and only then builds an :class:`AuthSession` and asks
  the configured provider; N concurrent invocations make one IdP request.
* **What is cached.**  Only the access token, its type and expiry: never a refresh token or a secret.
  Refresh tokens stay in the store the provider uses (keyring for Pkce/DeviceFlow, which falls back to
  0600 files when there is no keyring backend, e.g. headless Linux).  Tokens with no known expiry are
  not cached (the helper could not tell when to stop handing them out).
* **Not encrypted at rest, deliberately.**  An encryption key would have to live somewhere the same user
  can read without a prompt (a file beside the cache, or the keyring, which is absent headless and costs
  a D-Bus round trip per call); that protects against nothing a 0600 file does not.  gcloud
  (``access_tokens.db``) and az (``msal_token_cache.json``) keep tokens on disk the same way.  What is on
  disk is a short-lived access token.

Exit codes: 0 ok; 1 unexpected error; 2 configuration (including usage errors, the helper naming
itself as its own provider, an expired or wrong-audience platform token, and a per-directory config file
the user has not trusted: ``flyteauth trust``); 3 a human must log in
(run ``flyteauth login``); 4 the IdP rejected the credentials or grant; 5 transient (IdP or network
unreachable, timeouts, lock wait): retry later.
stdout carries the token (or ``--json``) and nothing else; messages go to stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from ._display import add_config_argument, jwt_claims

if TYPE_CHECKING:
    from pathlib import Path

    from flyteauth_providers.file_store import FileTokenStore

    from ..config import AuthConfig
    from ..token import Token

EXIT_OK, EXIT_ERROR, EXIT_CONFIG, EXIT_INTERACTION, EXIT_REJECTED, EXIT_TRANSIENT = 0, 1, 2, 3, 4, 5
DEFAULT_MIN_VALID = 60.0
#: Set while the helper runs a provider: a nested ``flyteauth token`` (the config naming the helper as
#: its own ExternalCommand, directly or through a wrapper script) fails instead of recursing.
GUARD_ENV = "FLYTEAUTH_TOKEN_HELPER_ACTIVE"
_KEY_PREFIX = "flyteauth-token-helper:v2:"
_INPUTS_VERSION = 1
_ENV_PREFIXES = ("FLYTE", "UCTL_")


#: What ``flyteauth token --help`` says about exit codes (scripts branch on them; see the module docstring).
EXIT_CODES_HELP = """\
exit codes:
  0  ok: the token is on stdout
  1  unexpected error
  2  configuration (a usage error, the helper named as its own provider, an expired or
     wrong-audience platform token, an untrusted per-directory config file: `flyteauth
     trust`): fix the config
  3  a human must log in: run `flyteauth login`
  4  the IdP rejected the credentials or the grant
  5  transient (IdP or network unreachable, timeout, lock wait): retry later"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXIT_CODES_HELP
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_config_argument(parser)
    parser.add_argument("--min-valid", type=_seconds, default=DEFAULT_MIN_VALID, metavar="SECONDS",
                        help="the token printed lives at least this long (default 60; capped at half the "
                             "token's issued lifetime)")
    parser.add_argument("--json", action="store_true",
                        help="print {access_token, token_type, expires_at, expires_in} instead of the token")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative number of seconds: {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from ..errors import FlyteAuthError

    try:
        token = get_token(args.config, min_valid=args.min_valid)
    except FlyteAuthError as error:
        print(f"flyteauth: {error}", file=sys.stderr)
        return exit_code(error)
    sys.stdout.write(render(token, as_json=args.json))
    sys.stdout.flush()
    return EXIT_OK


def exit_code(error: BaseException) -> int:
    """The documented exit status for an error (see the module docstring)."""
    from ..errors import (
        CommandError,
        ConfigError,
        InteractionRequired,
        PlatformTokenError,
        PluginError,
        TokenRequestError,
    )

    if isinstance(error, (ConfigError, PluginError)):
        return EXIT_CONFIG
    if isinstance(error, InteractionRequired):
        return EXIT_INTERACTION
    if getattr(error, "transient", False):
        return EXIT_TRANSIENT
    if isinstance(error, PlatformTokenError):
        # An expired or wrong-audience platform token: the workload's identity setup needs fixing, and
        # running the helper again will not help (a source that could not be reached is transient, above).
        return EXIT_CONFIG
    if isinstance(error, (TokenRequestError, CommandError)):
        return EXIT_REJECTED
    return EXIT_ERROR


def render(token: Token, *, as_json: bool, now: float | None = None) -> str:
    if not as_json:
        return token.access_token + "\n"
    import json

    now = time.time() if now is None else now
    expires_at = None if token.expires_at is None else int(token.expires_at)
    expires_in = None if token.expires_at is None else max(int(token.expires_at - now), 0)
    return json.dumps({"access_token": token.access_token, "token_type": token.token_type,
                       "expires_at": expires_at, "expires_in": expires_in}) + "\n"


# -- the cache ----------------------------------------------------------------------------------------
def cache_key(config_path: str | None, env: dict[str, str] | None = None) -> str:
    """A digest of everything that selects the credential, computed without parsing any config file."""
    from ..config import default_config_paths

    env = dict(os.environ if env is None else env)
    env.pop(GUARD_ENV, None)
    digest = hashlib.sha256()
    digest.update(b"home\0" + os.path.expanduser("~").encode() + b"\0")
    digest.update(f"uid\0{getattr(os, 'getuid', lambda: -1)()}\0".encode())
    for name in sorted(k for k in env if k.startswith(_ENV_PREFIXES)):
        digest.update(f"env\0{name}\0{env[name]}\0".encode())
    paths = [os.path.expanduser(config_path)] if config_path else [str(p) for p in default_config_paths(env)]
    for path in paths:
        try:
            with open(path, "rb") as fh:
                content = fh.read()
        except OSError:
            digest.update(f"absent\0{os.path.abspath(path)}\0".encode())
            continue
        # Every existing candidate counts: load_config skips a file without an admin:/flyteauth: section,
        # so the first existing file is not necessarily the one it reads.
        digest.update(f"file\0{os.path.abspath(path)}\0".encode() + hashlib.sha256(content).digest())
    return _KEY_PREFIX + digest.hexdigest()


def _cache() -> FileTokenStore:
    """The helper's cache: the file store's format, atomic writes and locks, in its own ``helper/``
    subdirectory of the token directory (so ``flyteauth logout`` can drop it whole)."""
    from flyteauth_providers.file_store import FileTokenStore, default_directory

    return FileTokenStore(directory=default_directory() / "helper")


def _private_cache() -> FileTokenStore | None:
    """:func:`_cache` when the token directory passes the file store's checks (``TokenStoreError``
    otherwise, said on stderr): whoever can write the token directory can swap ``helper/`` between the
    check and the read, and plant the token the helper prints.  None: do not cache."""
    from flyteauth_providers.file_store import FileTokenStore

    from ..errors import TokenStoreError

    cache = _cache()
    try:
        FileTokenStore(directory=cache.directory.parent)._check_directory()
        cache._check_directory()
    except TokenStoreError as exc:
        print(f"flyteauth: {exc.message}; not caching" + (f" ({exc.hint})" if exc.hint else ""), file=sys.stderr)
        return None
    return cache


def clear_cache() -> int:
    """Forget every access token the helper cached (``flyteauth logout``); returns how many."""
    import contextlib

    removed = 0
    directory = _cache().directory
    for path in directory.glob("*.json"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed += 1
    for path in directory.glob("*.inputs"):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return removed


def issued_lifetime(token: Token, saved_at: float) -> float | None:
    """How long the token lived when issued: ``exp - iat`` of a JWT, else expiry minus when we saved it."""
    if token.expires_at is None:
        return None
    iat = (jwt_claims(token.access_token) or {}).get("iat")
    start = float(iat) if isinstance(iat, (int, float)) and not isinstance(iat, bool) and iat < token.expires_at \
        else saved_at
    return max(token.expires_at - start, 0.0)


def good_for(token: Token, saved_at: float, min_valid: float, now: float) -> bool:
    """Whether ``token`` still has ``min_valid`` seconds to live, the demand capped at half its lifetime."""
    lifetime = issued_lifetime(token, saved_at)
    if lifetime is None or token.expires_at is None:
        return False
    return token.expires_at - now >= min(min_valid, lifetime / 2)


def _cached(cache: FileTokenStore, key: str, min_valid: float) -> Token | None:
    record = cache.load_record(key)
    if record is None:
        return None
    token, saved_at = record
    return token if good_for(token, saved_at, min_valid, time.time()) else None


def get_token(config_path: str | None, *, min_valid: float = DEFAULT_MIN_VALID) -> Token:
    """A token with at least ``min_valid`` seconds to live (capped), from the cache when possible."""
    from ..errors import ConfigError

    if os.environ.get(GUARD_ENV):
        raise ConfigError(
            "flyteauth token was started by flyteauth token (the configured provider runs the helper itself)",
            hint="Put the real provider in the config's flyteauth: section (authType, clientId, ...) and keep "
                 "admin.authType: ExternalCommand with command: [flyteauth, token] for the other clients",
        )
    selector = cache_key(config_path)
    cache = _private_cache()
    if cache is None:
        return _acquire(config_path, min_valid, None, selector)[0]
    key = _token_key(cache, selector)
    token = None if key is None else _cached(cache, key, min_valid)
    if token is not None:
        return token
    with cache.lock(selector):
        key = _token_key(cache, selector)  # a concurrent invocation may have refreshed it
        token = None if key is None else _cached(cache, key, min_valid)
        if token is not None:
            return token
        token, key = _acquire(config_path, min_valid, cache, selector)
        if token.expires_at is not None and key is not None:
            from ..token import Token

            cache.save(key, Token(access_token=token.access_token, token_type=token.token_type,
                                  expires_at=token.expires_at))
    return token


# -- the identity's inputs: what the warm path reads again instead of parsing the config ---------------
def _inputs_path(cache: FileTokenStore, selector: str) -> Path:
    return cache.path(selector).with_suffix(".inputs")  # not *.json: those are tokens


def _token_key(cache: FileTokenStore, selector: str) -> str | None:
    """The cached token's key for the identity now, or None (no inputs recorded yet, or one failed)."""
    import json

    from ..identity import Input, fingerprint

    record = cache.read_private(_inputs_path(cache, selector))
    try:
        data = json.loads(record) if record is not None else None
        if not isinstance(data, dict) or data.get("version") != _INPUTS_VERSION or data.get("selector") != selector:
            return None
        inputs = [Input.from_json(item) for item in data["inputs"]]
        return _key(selector, inputs, fingerprint(inputs))
    except (ValueError, TypeError, KeyError, OSError, RecursionError):
        return None


def _key(selector: str, inputs: list[Any], print_: str) -> str:
    import json

    described = json.dumps([item.to_json() for item in inputs], sort_keys=True)
    return selector + ":" + hashlib.sha256(f"{described}\0{print_}".encode()).hexdigest()


def _acquire(config_path: str | None, min_valid: float, cache: FileTokenStore | None,
             selector: str) -> tuple[Token, str | None]:
    """Ask the configured provider (through an AuthSession) for a token that lives long enough, and the
    key to cache it under (None: its identity cannot be checked again without the provider)."""
    import json

    from .. import identity
    from ..config import load_config
    from ..session import AuthSession

    config = load_config(config_path)
    refuse_self_reference(config)
    os.environ[GUARD_ENV] = "1"
    try:
        with AuthSession(config) as session:
            with identity.recording() as seen:
                session.identity()
            before = _fingerprint_or_none(seen.inputs)
            now = time.time()
            token = session.get_token()
            if not good_for(token, now, min_valid, now) and token.expires_at is not None:
                token = session.manager.refresh(reason="expiring")  # uses the refresh token, if any
    finally:
        os.environ.pop(GUARD_ENV, None)
    # Cache only when the identity can be checked again and did not change while the token was fetched.
    if cache is None or not seen.complete or before is None or before != _fingerprint_or_none(seen.inputs):
        return token, None
    cache.write_private(_inputs_path(cache, selector), json.dumps(
        {"version": _INPUTS_VERSION, "selector": selector, "inputs": [i.to_json() for i in seen.inputs]}).encode())
    return token, _key(selector, seen.inputs, before)


def _fingerprint_or_none(inputs: list[Any]) -> str | None:
    from ..identity import fingerprint

    try:
        return fingerprint(inputs)
    except OSError:
        return None


def refuse_self_reference(config: AuthConfig) -> None:
    """``admin.authType: ExternalCommand`` with ``command: [flyteauth, token]`` is for the *other* clients;
    the helper itself needs its provider from the ``flyteauth:`` section."""
    from ..errors import ConfigError

    if config.resolved_auth_type.lower() not in ("externalcommand", "external_process"):
        return
    if not is_helper_command(config.command):
        return
    raise ConfigError(
        "authType ExternalCommand runs `flyteauth token`, which would call itself",
        hint="Add a flyteauth: section beside admin: with the provider flyteauth should use "
             "(e.g. authType: ClientSecret, clientId, clientSecretLocation)",
    )


def is_helper_command(argv: tuple[str, ...] | list[str]) -> bool:
    """``flyteauth token ...``, ``/path/to/flyteauth token`` or ``python -m flyteauth_core.cli token``."""
    words = list(argv)
    if len(words) >= 4 and os.path.basename(words[0]).startswith("python") and words[1:3] == [
            "-m", "flyteauth_core.cli"]:
        words = ["flyteauth", *words[3:]]
    name = os.path.basename(words[0]) if words else ""
    return name in ("flyteauth", "flyteauth.exe") and "token" in words[1:]
