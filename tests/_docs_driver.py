"""Child process of the docs tests: run one doc block so that its traceback names the doc file and line.

Reads ``{"where": "README.md:22", "line": 22, "code": "..."}`` on stdin.  The code is compiled under the
doc's file name, shifted so that line numbers are the Markdown file's; top-level ``await`` is allowed (the
block then runs in ``asyncio.run``).  The names of ``_docs_preamble`` are in scope.  Exit 0 on success;
on an exception, the traceback and ``doc block <where> failed`` on stderr, exit 1.
"""

import ast
import asyncio
import inspect
import json
import sys
import traceback


def main() -> int:
    spec = json.load(sys.stdin)
    where, line = spec["where"], int(spec["line"])
    filename = where.rsplit(":", 1)[0]
    import _docs_preamble

    namespace = {"__name__": "__main__", **{k: getattr(_docs_preamble, k) for k in _docs_preamble.__all__}}
    try:
        code = compile("\n" * line + spec["code"], filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(code, namespace)
        if inspect.iscoroutine(result):
            asyncio.run(result)
    except BaseException:
        traceback.print_exc()
        print(f"doc block {where} failed", file=sys.stderr)
        return 1
    finally:
        _docs_preamble._close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
