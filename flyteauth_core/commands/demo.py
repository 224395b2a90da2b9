"""``flyteauth demo``: run the whole loop against embedded servers (no Flyte needed); ``--serve`` keeps a
Flyte-compatible server and token endpoint running for your SDK until interrupted."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=6.0, help="how long to keep calling (default 6)")
    parser.add_argument("--ttl", type=float, default=None,
                        help="token lifetime in seconds (default 2; 300 with --serve)")
    parser.add_argument("--serve", action="store_true",
                        help="keep a Flyte-compatible server (gRPC + Connect, TLS) and a token endpoint running on "
                             "127.0.0.1 until Ctrl-C; prints 'config: PATH' for flytekit, flyte 2.x and "
                             "`flyteauth token`")
    parser.add_argument("--port", type=int, default=0, help="--serve: the Flyte endpoint's port (default: a free one)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="--serve: where to write config.yaml, the secret and the CA (default: a temporary "
                             "directory removed on exit)")


def run(args: argparse.Namespace) -> int:
    if args.serve:
        from ..demo_serve import serve

        return serve(directory=args.dir, port=args.port, ttl=300.0 if args.ttl is None else args.ttl,
                     out=sys.stdout)
    from ..demo import run_demo

    return run_demo(seconds=args.seconds, ttl=2.0 if args.ttl is None else args.ttl, out=sys.stdout)
