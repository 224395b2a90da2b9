"""The interop matrix: run ``tests/interop`` and print its outcomes, rows flows, columns identity providers.

    .venv/bin/python benchmarks/interop.py                 # run the suite (~2 min), print the matrix
    .venv/bin/python benchmarks/interop.py --write-docs    # ... and put it into docs/idps.md
    .venv/bin/python benchmarks/interop.py -- -k glewlwyd  # extra pytest arguments after --

Each cell is ✔ (every parametrisation passed: each token store for the grant rows), ✗ with the reason
(a failure, a server limitation with its workaround in docs/idps.md, or a server that could not be
installed or run here), n/a (the server lacks the feature) or — (not run against this server).  The exit
code is pytest's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.interop.conftest import PEERS  # noqa: E402

ROWS = (
    "client credentials, client_secret_basic",
    "client credentials, client_secret_post",
    "client credentials, client_secret_jwt",
    "client credentials, private_key_jwt",
    "client credentials, tokenUrl without discovery",
    "authorization code + PKCE (browser), refresh",
    "device authorization grant (approved on its pages), refresh",
    "revocation (flyteauth logout)",
    "OIDC discovery served as Flyte's AuthMetadataService",
    "rotation proof: 8 processes sharing a file store, 10 refreshes",
    "rotation proof: 2 hosts sharing Redis, 10 refreshes",
)
DOCS = ROOT / "docs" / "idps.md"
START, END = "<!-- interop-matrix:start -->", "<!-- interop-matrix:end -->"


def cell(outcomes: list[dict[str, Any]]) -> str:
    """One cell from the outcomes of every test (and parametrisation) that fills it."""
    if not outcomes:
        return "—"
    by_result: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for outcome in outcomes:
        by_result[outcome["result"]].append(outcome)
    if by_result["failed"]:
        first = by_result["failed"][0]
        params = re.search(r"\[(.*)\]$", first["test"])
        where = f" ({params.group(1)})" if params else ""
        return f"✗ {first['reason']}{where}"
    if by_result["xfail"]:  # a known limitation: the server's (workaround in docs/idps.md) or being fixed
        return f"✗ {by_result['xfail'][0]['reason']}"
    if by_result["skipped"]:
        return f"✗ {by_result['skipped'][0]['reason']}"
    if by_result["n/a"] and not by_result["passed"]:
        return by_result["n/a"][0]["reason"]
    return "✔"


def table(results: list[dict[str, Any]]) -> str:
    grid: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for outcome in results:
        grid[outcome["flow"], outcome["idp"]].append(outcome)
    rows = list(ROWS) + sorted({flow for flow, _ in grid} - set(ROWS))
    escape = lambda text: text.replace("|", "\\|")  # noqa: E731
    lines = ["| flow | " + " | ".join(PEERS) + " |", "| --- |" + " --- |" * len(PEERS)]
    for row in rows:
        lines.append(f"| {escape(row)} | " + " | ".join(escape(cell(grid[row, peer])) for peer in PEERS) + " |")
    return "\n".join(lines)


def write_docs(matrix: str) -> None:
    text = DOCS.read_text()
    before, rest = text.split(START, 1)
    _, after = rest.split(END, 1)
    DOCS.write_text(f"{before}{START}\n{matrix}\n{END}{after}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write-docs", action="store_true", help="replace the matrix in docs/idps.md")
    parser.add_argument("--json", help="also write the raw outcomes here")
    parser.add_argument("pytest_args", nargs="*", help="after --: extra pytest arguments")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="flyteauth-interop-") as tmp:
        report = Path(tmp) / "interop.json"
        env = {**os.environ, "FLYTEAUTH_INTEROP_REPORT": str(report)}
        proc = subprocess.run([sys.executable, "-m", "pytest", "tests/interop", "-q", "-p", "no:randomly",
                               *args.pytest_args], cwd=ROOT, env=env, check=False)
        results = json.loads(report.read_text()) if report.exists() else []
    matrix = table(results)
    print("\nInterop matrix (tests/interop; grant rows run with tokenStore memory, file and redis):\n")
    print(matrix)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.write_docs:
        write_docs(matrix)
        print(f"\nwrote {DOCS.relative_to(ROOT)}")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
