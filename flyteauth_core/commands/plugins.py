"""``flyteauth plugins``: installed plugins, what each registers, and load errors."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # no options


def run(args: argparse.Namespace) -> int:
    from ..plugins import default_registry

    registry = default_registry()
    plugins = registry.plugins()
    if not plugins:
        print("no flyteauth plugins installed")
        return 0
    for info in plugins:
        status = "blocked" if info.blocked else ("FAILED" if info.error else "ok")
        print(f"{info.name}  [{status}]  {info.distribution} {info.version}  ({info.module})")
        for item in info.registered:
            print(f"    registers {item}")
        for reg in registry.registrations(plugin=info.name):
            if reg.description:
                print(f"    {reg.kind} {reg.name}: {reg.description}")
            for old in registry.replaced(reg):
                print(f"    {reg.kind} {reg.name} replaces {old.name!r} from {old.distribution} "
                      f"(entry point {old.plugin}), by replace=True")
            if reg.options:
                print(f"    {reg.kind} {reg.name} reads " + ", ".join(o.key for o in reg.options))
        if info.error:
            print(f"    error: {info.error}")
    return 0
