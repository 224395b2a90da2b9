"""``flyteauth token`` warm path with TokenExchange and a platform token file, against ``import grpc``.

    .venv/bin/python benchmarks/token_helper_exchange.py [--runs 15]

The helper keys its cache on the credential's identity, which for TokenExchange includes the platform
token's ``iss``/``sub``/``aud``: every warm call reads the token file and decodes its claims (no network).
This measures what that costs.  Peers: a Kubernetes-style issuer (``tests/_platform_issuer.py``), the
oidc-provider test IdP trusting it (``tests/_idp.py``, needs node) and a Flyte test server.  Prints the
median spawn-to-exit times, the ratio (goal <= 1.5) and the IdP's token exchanges (goal 1).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from token_helper import HELPER, spawn  # noqa: E402  (the same timing as benchmarks/token_helper.py)

from flyteauth_core.testing import FlyteTestServer  # noqa: E402
from tests._idp import IdpServer  # noqa: E402
from tests._platform_issuer import PlatformIssuer  # noqa: E402
from tests.conftest import jwt_validator  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args(argv)
    with PlatformIssuer("kubernetes") as cluster, tempfile.TemporaryDirectory() as tmp, \
            IdpServer(token_ttl=3600, env={"IDP_SUBJECT_ISSUERS": cluster.issuer}) as idp:
        flyte = FlyteTestServer(jwt_validator(idp), token_endpoint=idp.token_endpoint, issuer=idp.issuer).start()
        try:
            token = Path(tmp) / "token"
            token.write_text(cluster.kubernetes_token(idp.issuer))
            config = Path(tmp) / "config.yaml"
            config.write_text(f"admin:\n  endpoint: dns:///{flyte.target}\n  insecure: true\n"
                              f"  authType: TokenExchange\n  clientId: flyte-exchange\n  platformTokenFile: {token}\n"
                              f"  platformTokenAudience: {idp.issuer}\n  authorizationHeader: authorization\n")
            env = {k: v for k, v in os.environ.items() if not k.startswith(("FLYTE", "UCTL_"))}
            env.update(HOME=tmp, FLYTECTL_CONFIG=str(config))
            spawn([str(HELPER), "token"], env)  # cold: one exchange
            variants = {'python -c "import grpc"': [sys.executable, "-c", "import grpc"],
                        "flyteauth token (warm, TokenExchange)": [str(HELPER), "token"]}
            times: dict[str, list[float]] = {name: [] for name in variants}
            for i in range(args.runs):
                order = list(variants.items())
                for name, command in order[i % 2:] + order[:i % 2]:
                    times[name].append(spawn(command, env))
            exchanges = int(idp.stats()["by_grant"].get("urn:ietf:params:oauth:grant-type:token-exchange", 0))
        finally:
            flyte.stop()
    base = statistics.median(times['python -c "import grpc"'])
    for name, values in times.items():
        print(f"{name}: median {statistics.median(values) * 1e3:.1f} ms ({statistics.median(values) / base:.2f}x)")
    ratio = statistics.median(times["flyteauth token (warm, TokenExchange)"]) / base
    print(f"ratio {ratio:.2f} (goal <= 1.5: {'ok' if ratio <= 1.5 else 'MISS'}); token exchanges: {exchanges} (goal 1)")
    return 0 if exchanges == 1 and ratio <= 1.5 else 1


if __name__ == "__main__":
    sys.exit(main())
