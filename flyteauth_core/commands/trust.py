"""``flyteauth trust [PATH]``: let a per-directory config file (``./.flyte/config.yaml``, ...) run its commands
and send credentials, as ``direnv allow`` and ``mise trust`` do (the logic is in :mod:`flyteauth_core.trust`).

The file's content hash is recorded; a changed file needs ``flyteauth trust`` again.  ``--list`` shows
what is trusted, ``--revoke PATH`` forgets a file (and the credential helper's cached tokens).
"""

from __future__ import annotations

import argparse
import os


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", nargs="?", help="the config file to trust (default: the one the search finds "
                                                "from this directory)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--list", action="store_true", help="list the trusted files and whether they changed")
    group.add_argument("--revoke", action="store_true", help="forget the trust of PATH")


def run(args: argparse.Namespace) -> int:
    from .. import trust
    from ..config import needs_trust, searched_config_file
    from ..errors import ConfigError

    if args.list:
        for record in trust.records():
            print(f"{record['state']:<8} {record['path']}  sha256:{str(record['sha256'])[:12]}  "
                  f"{record.get('trusted_at', '')}")
        return 0
    path = args.path
    if path is None:
        found = searched_config_file()
        if found is None:
            raise ConfigError("No config file found from this directory", hint="Name the file: flyteauth trust PATH")
        path = str(found)
    path = os.path.abspath(os.path.expanduser(path))
    if args.revoke:
        from .token import clear_cache

        removed = trust.revoke(path)
        clear_cache()  # a token the helper got with the trusted file is not handed out any more
        print(f"revoked {path}" if removed else f"{path} was not trusted")
        return 0
    if not needs_trust(path):
        print(f"{path} is a user-level file or one your environment names: it needs no trust")
        return 0
    recorded = trust.trust_file(path)
    print(f"trusted {recorded.path} (sha256:{recorded.digest[:12]}) until it changes")
    try:
        from ..config import load_config

        allowed = trust.actions(load_config(path))
    except ConfigError:
        allowed = ()  # not a complete config on its own (the environment supplies the rest): nothing to list
    for action in allowed:
        print(f"  it may now {action}")
    return 0
