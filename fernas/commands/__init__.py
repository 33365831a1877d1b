"""Subcommands of the `fernas` CLI; each module exposes `register(subparsers)`."""
