"""Shared by the helper scripts: count an invocation in the file named by argv[1]."""

import sys


def count() -> int:
    with open(sys.argv[1], "a+") as fh:
        fh.write("x\n")
        fh.seek(0)
        return len(fh.read().splitlines())
