"""One module per ``feltsafe`` subcommand.

Each module defines ``register(subparsers) -> None``, which adds its parser and sets
``func`` (``(argparse.Namespace) -> int``, the exit code) as the parser default.
"""
