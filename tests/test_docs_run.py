"""Docs that run: every ```python block of README.md and docs/*.md runs against the demo server, unless its
info string is ``python illustrative`` (CONTRIBUTING.md, "Docs that run").

Each block runs in its own process (tests/_docs_driver.py) with the placeholders of
``_docs_blocks.substitutions`` replaced, ``$FLYTEAUTH_CONFIG`` naming the demo's config, the demo's CA
trusted through gRPC's and OpenSSL's standard variables, and the few names of ``_docs_preamble`` in scope.
A failure names the file and the line of the block's opening fence.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from flyteauth_core.demo_serve import DemoFlyte

from ._docs_blocks import Block, block_env, doc_files, extract, python_blocks, run_block, substitutions

#: Credentials the docs show in code (``AuthConfig(client_id="ci", client_secret="...")``); the docs' token
#: endpoint accepts them beside the demo's own client.
DOC_CLIENTS = {"ci": "..."}

BLOCKS = python_blocks()


class Docs:
    def __init__(self, demo: DemoFlyte, home: Path) -> None:
        self.demo, self.home = demo, home
        self.env = block_env(dict(os.environ), config=demo.config_path, ca=demo.ca_path, home=home)
        self.subs = substitutions(demo.directory, demo.endpoint, demo.url)

    def run(self, block: Block) -> None:
        result = run_block(block, env=self.env, subs=self.subs, cwd=self.home)
        if result.returncode != 0:
            pytest.fail(f"the python block at {block.where} failed (mark it ```python illustrative if it is not "
                        f"meant to run):\n{result.stderr[-6000:]}{result.stdout[-2000:]}", pytrace=False)


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Docs]:
    tmp = tmp_path_factory.mktemp("docs")
    with DemoFlyte(tmp / "demo", other_clients=DOC_CLIENTS) as demo:
        home = tmp / "home"
        home.mkdir()
        yield Docs(demo, home)


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.runnable], ids=lambda b: b.where)
def test_doc_block_runs(docs: Docs, block: Block) -> None:
    docs.run(block)


def test_the_sdk_snippets_run_and_are_not_illustrative() -> None:
    """The ConnectRPC, flytekit and httpx snippets are the ones users copy first: they must be runnable."""
    runnable = [b.code for b in BLOCKS if b.runnable]
    for marker in ("connect_interceptors", "FlyteRemote", "httpx"):
        assert any(marker in code for code in runnable), f"no runnable doc block uses {marker}"
    assert len(runnable) >= 8, [b.where for b in BLOCKS]


def test_a_broken_block_fails_naming_its_file_and_line(docs: Docs, tmp_path: Path) -> None:
    page = tmp_path / "broken.md"
    page.write_text("# A page\n\nSome text.\n\n```python\nfrom flyteauth_core import AuthSession, load_config\n\n"
                    "with AuthSession(load_config()) as session:\n    session.get_tokn()\n```\n\n"
                    "```python illustrative\nthis is not python\n```\n")
    runnable, illustrative = extract(page)
    assert runnable.runnable and runnable.line == 5 and not illustrative.runnable
    with pytest.raises(pytest.fail.Exception) as failed:
        docs.run(runnable)
    message = str(failed.value)
    assert f"{page}:5 failed" in message
    assert f'File "{page}", line 9' in message and "get_tokn" in message  # the Markdown line of the call


def test_a_placeholder_endpoint_reaches_the_demo(docs: Docs, tmp_path: Path) -> None:
    """What a block with ``dns:///flyte.example.com`` and the docs' credentials really talks to."""
    page = tmp_path / "page.md"
    page.write_text('```python\nfrom flyteauth_core import AuthConfig, AuthSession\n'
                    'config = AuthConfig(endpoint="dns:///flyte.example.com", auth_type="ClientSecret",\n'
                    '                    client_id="ci", client_secret="...")\n'
                    'with AuthSession(config) as session:\n'
                    '    assert MyServiceStub(session.channel()).ListProjects(b"", timeout=30).projects\n```\n')
    before = docs.demo.idp.requests
    docs.run(extract(page)[0])
    assert docs.demo.idp.requests == before + 1


def test_extraction_finds_nested_and_tilde_blocks(tmp_path: Path) -> None:
    page = tmp_path / "nested.md"
    page.write_text("1. Step one:\n\n    ```python\n    import os\n    if os:\n        pass\n    ```\n\n"
                    "~~~python\nprint('```')\n```\n~~~\n\n```bash\nls\n```\n")
    blocks = extract(page)
    assert [(b.line, b.language, b.runnable) for b in blocks] == [(3, "python", True), (9, "python", True),
                                                                 (14, "bash", False)]
    assert blocks[0].code == "import os\nif os:\n    pass\n"
    assert blocks[1].code == "print('```')\n```\n"


def test_every_doc_file_is_read() -> None:
    assert {p.name for p in doc_files()} >= {"README.md", "embedding.md", "plugins.md"}
