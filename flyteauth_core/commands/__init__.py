"""One module per ``flyteauth`` subcommand; each has ``add_arguments(parser)`` and ``run(args) -> int``.

The dispatcher (``flyteauth_core.cli``) imports only the module of the subcommand being run.
"""
