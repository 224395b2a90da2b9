"""Find the Python blocks of the docs (README.md, docs/*.md) and run one against the demo server.

The convention (CONTRIBUTING.md, "Docs that run"): every fenced block whose info string starts with
``python`` runs in CI, except those whose info string is ``python illustrative``.  A block runs in its own
process, with the placeholders below replaced and ``_docs_preamble`` names in scope; a failure names the
file and the line of the block's opening fence.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve().parent
ILLUSTRATIVE = "illustrative"
# Any indent: a fence inside a list item may sit 4+ spaces deep, and a python block there must not be missed.
_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
PYTHON = ("python", "py", "python3")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    info: str
    code: str

    @property
    def where(self) -> str:
        try:
            name = self.path.relative_to(ROOT)
        except ValueError:
            name = self.path
        return f"{name}:{self.line}"

    @property
    def language(self) -> str:
        return self.info.split()[0].lower() if self.info.split() else ""

    @property
    def runnable(self) -> bool:
        words = self.info.lower().split()
        return bool(words) and words[0] in PYTHON and ILLUSTRATIVE not in words[1:]


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def extract(path: Path) -> list[Block]:
    """Every fenced code block of a Markdown file (``` or ~~~, 3+ long; closed by the same character, at
    least as long, with no info string; the fence's indent is removed from the body)."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        fence, indent, start = match["fence"], len(match["indent"]), i
        body: list[str] = []
        i += 1
        while i < len(lines):
            close = _FENCE.match(lines[i])
            if close and close["fence"].startswith(fence) and not close["info"].strip():
                break  # a closing fence: the same character, at least as long, no info string
            text = lines[i]
            body.append(text[min(indent, len(text) - len(text.lstrip(" "))):])  # the fence's indent, at most
            i += 1
        blocks.append(Block(path, start + 1, match["info"].strip(), "\n".join(body) + "\n"))
        i += 1
    return blocks


def python_blocks(paths: list[Path] | None = None) -> list[Block]:
    return [b for p in (paths or doc_files()) for b in extract(p) if b.language in PYTHON]


def substitutions(demo_dir: Path, endpoint: str, url: str) -> dict[str, str]:
    """Placeholders the docs use, and what they stand for in the docs tests (longest first)."""
    host = endpoint.removeprefix("dns:///")
    return {
        "/tmp/flyteauth-demo": str(demo_dir),
        "127.0.0.1:8089": host,  # the README's `flyteauth demo --serve --port 8089`
        "dns:///flyte.example.com:443": endpoint,
        "dns:///flyte.example.com": endpoint,
        "https://flyte.example.com": url,
        "flyte.example.com:443": host,
    }


def run_block(block: Block, *, env: dict[str, str], subs: dict[str, str], cwd: Path,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run one block in a child process (tests/_docs_driver.py); the result's stderr names ``block.where``."""
    code = block.code
    for placeholder, value in subs.items():
        code = code.replace(placeholder, value)
    payload = json.dumps({"where": block.where, "line": block.line, "code": code})
    return subprocess.run([sys.executable, str(HERE / "_docs_driver.py")], input=payload, capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=timeout, check=False)


def block_env(base: dict[str, str], *, config: Path, ca: Path, home: Path) -> dict[str, str]:
    """The environment a block runs in: the demo's config found by ``load_config()``, its CA trusted the
    way a user trusts a private CA (gRPC's and OpenSSL's standard variables), nothing of the caller's."""
    env = {k: v for k, v in base.items() if not k.startswith(("FLYTE", "UCTL_"))}
    env.update(
        FLYTEAUTH_CONFIG=str(config),
        GRPC_DEFAULT_SSL_ROOTS_FILE_PATH=str(ca), SSL_CERT_FILE=str(ca),
        HOME=str(home), FLYTEAUTH_TOKEN_DIR=str(home / "tokens"), FLYTEAUTH_INTERACTIVE="0",
        PYTHONPATH=os.pathsep.join(p for p in (str(HERE), base.get("PYTHONPATH", "")) if p),
    )
    return env
