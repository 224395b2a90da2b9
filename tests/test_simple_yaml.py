"""The config reader's YAML subset (``flyteauth_core._simple_yaml``) answers exactly what PyYAML answers,
or hands the document to PyYAML: checked on every YAML file in the repository, hand-picked traps of YAML 1.1,
and generated documents."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from flyteauth_core._simple_yaml import NOT_SIMPLE, load

ROOT = Path(__file__).resolve().parent.parent


def same(a: Any, b: Any) -> bool:
    """Equal values of equal types all the way down (True == 1 in Python, not here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def check(text: str) -> bool:
    """True when the subset read ``text`` itself (and agreed with PyYAML); False when it handed it over."""
    ours = load(text)
    if ours is NOT_SIMPLE:
        return False
    assert same(ours, yaml.safe_load(text)), text
    return True


TRAPS = [
    "on: 1\n", "off:\n  a: 1\n", "yes: x\n", "a: yes\n", "a: No\n", "a: oN\n", "a: y\n", "a: ~\n", "a: null\n",
    "a: 1.5\n", "a: 1e3\n", "a: .inf\n", "a: 0x1f\n", "a: 010\n", "a: 0o7\n", "a: 1_000\n", "a: 1:30\n",
    "a: 2001-12-14\n", "a: 2m\n", "a: 1m60s\n", "a: 10ms\n", "a: 1e3\n", "a: 1.5s\n", "a: 2M\n",
    "a: 127.0.0.1:30080\n", "a: 1.2.3\n", "a: 190:20:30\n", "a: 0b101\n", "a: 2001-12-14 21:59:43.10 -5\n",
    "a: 1_000.5\n", "a: 12:30:45.5\n", "a: 1e+3\n", "a: 1.0e+3\n", "a: 3a\n", "a: 0x\n", "a: 09\n",
    "a: -1\n", "a: +1\n", "a: 0\n", "a: 12345678901234567890\n", "a: [1, 2]\n", "a: {b: 1}\n",
    "a: &x 1\nb: *x\n", "a: !!str 1\n", "a: |\n  text\n", "a: >\n  text\n", "a: 'it''s'\n", 'a: "q\\"x"\n',
    'a: "plain"\n', "a: 'x' # c\n", "a: x # c\n", "a: x#y\n", "a: http://h/p#frag\n", "a: b: c\n", "a: b:\n",
    "a:\n  - 1\n  - x\n", "a:\n- 1\nb: 2\n", "a:\n- b: 1\n", "a:\n  - - 1\n", "- 1\n- 2\n", "a\n", "---\na: 1\n",
    "a: 1\n...\n", "a:\n  b: 1\n c: 2\n", "a:\n    b: 1\n  c: 2\n", "a: multi\n  line\n", "a: 'open\n", "a: é\n",
    "a:\tb\n", "a: 1\r\n", "a: =\n", "<<: {}\n", "? a\n: b\n", "a: 1\na: 2\n", "  a: 1\n", "a :1\n", "a:1\n",
    "a: -\n", "a: '' \n", "a: \"\"\n", "a: ' spaced '\n", "a: x , y\n", "a: [\n", "a: %x\n", "a: @x\n", "a: `x\n",
    "admin:\n  endpoint: dns:///flyte.example.com:443\n  insecure: false\n  authType: Pkce\n  scopes:\n  - all\n"
    "logger:\n  show-source: true\n  level: 0\n",
]


@pytest.mark.parametrize("text", TRAPS)
def test_a_trap_is_read_as_pyyaml_reads_it_or_handed_over(text: str) -> None:
    try:
        expected: Any = yaml.safe_load(text)
    except yaml.YAMLError:
        assert load(text) is NOT_SIMPLE  # what PyYAML refuses is PyYAML's to report
        return
    ours = load(text)
    assert ours is NOT_SIMPLE or same(ours, expected), (text, ours, expected)


def test_common_configs_are_read_without_pyyaml() -> None:
    assert check("admin:\n  endpoint: dns:///flyte.example.com:443\n  insecure: true\n  authType: ClientSecret\n"
                 "  clientId: flytepropeller\n  clientSecretLocation: /etc/secrets/client_secret\n"
                 "  scopes:\n    - all\n  tokenStore: file  # comment\nlogger:\n  level: 0\n")
    assert check("flyteauth:\n  authType: Pkce\n  pkceConfig:\n    timeout: 2m\nadmin:\n  endpoint: 'dns:///x'\n")


def test_every_yaml_block_of_the_docs() -> None:
    """The configs users copy: every ```yaml block of README.md and docs/*.md."""
    import re

    blocks = [b for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
              for b in re.findall(r"```ya?ml\n(.*?)```", p.read_text(encoding="utf-8"), flags=re.S)]
    assert blocks
    for text in blocks:
        try:
            yaml.safe_load(text)
        except yaml.YAMLError:
            assert load(text) is NOT_SIMPLE
            continue
        check(text)


FRAGMENTS = ["x", "dns:///h:443", "'q'", '"d"', "true", "False", "ON", "no", "~", "null", "0", "17", "1.5", "010",
             "-", "- x", "[a]", "{}", "a: b", "x # c", "# c", "", "y", "2020-01-01", "http://h/p#f", "'it''s'", "&a x",
             "2m", "1m30s", "500ms", "1h", "1:30", "0x1", "1e3", "1.5m",
             "127.0.0.1:8089", "10.0.0.1", "1.2.3", "1_0", "1:2:3", "2020-1-1 x", "0b1", "0777", "1.e+3", "60:70"]
KEYS = ["admin", "endpoint", "authType", "scopes", "on", "pkceConfig", "a.b", "x-y", "_k", "1", "~"]


def test_generated_documents(seed: int = 19) -> None:
    rng = random.Random(seed)
    simple = 0
    for _ in range(3000):
        lines = []
        for _ in range(rng.randint(1, 6)):
            indent = " " * rng.choice([0, 0, 2, 2, 4, 1])
            if rng.random() < 0.25:
                lines.append(f"{indent}- {rng.choice(FRAGMENTS)}".rstrip())
            else:
                lines.append(f"{indent}{rng.choice(KEYS)}: {rng.choice(FRAGMENTS)}".rstrip())
        text = "\n".join(lines) + "\n"
        try:
            expected: Any = yaml.safe_load(text)
        except yaml.YAMLError:
            assert load(text) is NOT_SIMPLE, text
            continue
        ours = load(text)
        if ours is not NOT_SIMPLE:
            simple += 1
            assert same(ours, expected), (text, ours, expected)
    assert simple > 50  # the subset is exercised, not only the hand-over


def _render(rng: random.Random, depth: int, indent: int) -> list[str]:
    pad = " " * indent
    lines = []
    for _ in range(rng.randint(1, 4)):
        key = rng.choice(KEYS)
        roll = rng.random()
        if depth < 2 and roll < 0.3:
            lines += [f"{pad}{key}:", *_render(rng, depth + 1, indent + rng.choice([2, 4]))]
        elif roll < 0.45:
            item_pad = pad + " " * rng.choice([0, 2])
            lines += [f"{pad}{key}:", *(f"{item_pad}- {rng.choice(FRAGMENTS)}".rstrip() for _ in range(2))]
        elif roll < 0.55:
            lines.append(f"{pad}{key}: [{', '.join(rng.choice(FRAGMENTS) for _ in range(rng.randint(0, 3)))}]")
        else:
            lines.append(f"{pad}{key}: {rng.choice(FRAGMENTS)}".rstrip())
    return lines


def test_generated_nested_documents(seed: int = 1919) -> None:
    rng = random.Random(seed)
    simple = 0
    for _ in range(2000):
        text = "\n".join(_render(rng, 0, 0)) + "\n"
        try:
            expected: Any = yaml.safe_load(text)
        except yaml.YAMLError:
            assert load(text) is NOT_SIMPLE, text
            continue
        ours = load(text)
        if ours is not NOT_SIMPLE:
            simple += 1
            assert same(ours, expected), (text, ours, expected)
    assert simple > 100
