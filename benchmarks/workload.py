"""Workload identity soak: pod-like processes with no secret vs the client-secret baseline, same run.

    python benchmarks/workload.py [--seconds 20] [--ttl 2] [--rotate 3] [--quick]

Peers (loopback only): the oidc-provider test IdP (access tokens of ``--ttl`` seconds), a Kubernetes-style
cluster issuer it trusts (``tests/_platform_issuer.py``) and a Flyte test server validating the IdP's JWTs.
Each variant is a separate process (``tests/scripts/pod_workload.py``) that has only its config file and
calls the server every 10 ms for ``--seconds``:

* ``ClientSecret`` (baseline): a client secret in a 0600 file;
* ``TokenExchange``: a projected token file that the "kubelet" (this script) rotates every ``--rotate`` s;
* ``federated_jwt``: ClientSecret with the same rotating file as a federated client assertion.

The table shows calls, failed calls, IdP token requests and their ratio to the baseline (1.00 means
workload identity costs the IdP nothing extra).  Exit code 1 when any call failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from flyteauth_core.testing import FlyteTestServer  # noqa: E402
from tests._idp import CI_BASIC, IdpServer  # noqa: E402
from tests._platform_issuer import PlatformIssuer  # noqa: E402
from tests.conftest import jwt_validator  # noqa: E402

POD = ROOT / "tests" / "scripts" / "pod_workload.py"


def run_pod(config: Path, seconds: float, kubelet: threading.Event | None = None) -> dict[str, Any]:
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "FLYTEAUTH_CONFIG": str(config),
           "HOME": str(config.parent)}
    pod = subprocess.run([sys.executable, str(POD), str(seconds)], env=env, cwd=config.parent,
                         capture_output=True, text=True, timeout=seconds + 60, check=False)
    if kubelet is not None:
        kubelet.set()
    if pod.returncode != 0:
        return {"calls": 0, "failed": 1, "errors": [pod.stderr[-500:]], "token_requests": 0, "tokens": 0}
    return json.loads(pod.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def rotate(issuer: PlatformIssuer, directory: Path, aud: str, every: float, stop: threading.Event) -> int:
    rotations = 0
    while not stop.wait(every):
        issuer.write_projected(directory, issuer.kubernetes_token(aud, ttl=every * 3))
        rotations += 1
    return rotations


def run_variant(cluster: PlatformIssuer, idp: IdpServer, directory: Path, aud: str | None, text: str,
                seconds: float, every: float) -> tuple[dict[str, Any], int]:
    """One pod run; with ``aud``, a projected token for it that a kubelet thread rotates every ``every`` s."""
    directory.mkdir()
    stop = threading.Event()
    rotations: list[int] = []
    kubelet = None
    if aud is not None:
        path = cluster.write_projected(directory / "tokens", cluster.kubernetes_token(aud, ttl=every * 3))
        text += f"  platformTokenFile: {path}\n"
        kubelet = threading.Thread(
            target=lambda: rotations.append(rotate(cluster, directory / "tokens", aud, every, stop)))
        kubelet.start()
    config = directory / "config.yaml"
    config.write_text(text)
    idp.reset()
    result = run_pod(config, seconds, stop)
    if kubelet is not None:
        kubelet.join()
    result["idp_requests"] = idp.stats()["total"]
    return result, rotations[0] if rotations else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--ttl", type=int, default=2, help="IdP access token lifetime (s)")
    parser.add_argument("--rotate", type=float, default=3.0, help="platform token rotation period (s)")
    parser.add_argument("--quick", action="store_true", help="8-second runs")
    args = parser.parse_args()
    seconds = 8.0 if args.quick else args.seconds
    rows: list[tuple[str, dict[str, Any], int]] = []
    with PlatformIssuer() as cluster, tempfile.TemporaryDirectory() as tmp:
        env = {"IDP_SUBJECT_ISSUERS": cluster.issuer, "IDP_FEDERATED_ISSUER": cluster.issuer}
        with IdpServer(token_ttl=args.ttl, env=env) as idp:
            flyte = FlyteTestServer(jwt_validator(idp), token_endpoint=idp.token_endpoint, issuer=idp.issuer).start()
            try:
                base = f"admin:\n  endpoint: dns:///{flyte.target}\n  insecure: true\n"
                secret = Path(tmp, "client_secret")
                secret.write_text(CI_BASIC[1])
                secret.chmod(0o600)
                variants = {
                    "ClientSecret (secret file)": (None, f"{base}  authType: ClientSecret\n  clientId: {CI_BASIC[0]}\n"
                                                   f"  clientSecretLocation: {secret}\n"),
                    "TokenExchange (projected token)": (idp.issuer, f"{base}  authType: TokenExchange\n"
                                                       "  clientId: flyte-exchange\n"
                                                       f"  platformTokenAudience: {idp.issuer}\n"),
                    "federated_jwt (projected token)": ("api://AzureADTokenExchange",
                                                        f"{base}  authType: ClientSecret\n  clientId: flyte-federated\n"
                                                        "  tokenEndpointAuthMethod: federated_jwt\n"
                                                        "  platformTokenAudience: api://AzureADTokenExchange\n"),
                }
                for i, (name, (aud, text)) in enumerate(variants.items()):
                    result, rotations = run_variant(cluster, idp, Path(tmp, str(i)), aud, text, seconds, args.rotate)
                    rows.append((name, result, rotations))
            finally:
                flyte.stop()
    baseline = max(rows[0][1]["idp_requests"], 1)
    print(f"workload identity soak: {seconds:.0f} s per variant, {args.ttl} s access tokens, "
          f"platform token rotated every {args.rotate:g} s\n")
    header = f"{'variant':34} {'calls':>7} {'failed':>7} {'rotations':>9} {'IdP requests':>12} {'vs baseline':>11}"
    print(header)
    print("-" * len(header))
    for name, result, rotations in rows:
        print(f"{name:34} {result['calls']:>7} {result['failed']:>7} {rotations:>9} {result['idp_requests']:>12} "
              f"{result['idp_requests'] / baseline:>10.2f}x")
        for error in result.get("errors", [])[:2]:
            print(f"    {error}")
    return 1 if any(result["failed"] for _, result, _ in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
