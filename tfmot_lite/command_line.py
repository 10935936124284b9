"""What every `tfmot-lite` command shares: a user error is one line.

`Parser` turns argparse's usage errors into `CommandError`; `run(main,
argv)` calls a command's `main` and prints any `ValueError`/`OSError` as
`tfmot-lite: error: ...` (exit status 2, no traceback; set
`TFMOT_LITE_DEBUG=1` for the traceback). `cli.py` and `demo.py` both use it,
so neither imports the other to get it.
"""

import argparse
import os
import sys


class CommandError(ValueError):
    """A user error the CLI reports in one line."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr, exit status 2."""

    def error(self, message):
        raise CommandError(f"{message} (see `{self.prog} --help`)")


def run(main, argv=None):
    """`main(argv)`, with user errors printed as one line (exit status 2)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        return main(argv)
    except (ValueError, OSError) as error:
        if os.environ.get("TFMOT_LITE_DEBUG") == "1":
            raise
        message = " ".join(str(error).split())
        print(f"tfmot-lite: error: {message}", file=sys.stderr)
        raise SystemExit(2) from None
