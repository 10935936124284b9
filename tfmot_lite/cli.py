"""The `tfmot-lite` command line.

    tfmot-lite demo [--quick]     the pruning workflow on the bundled digits
"""

import argparse
import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="tfmot-lite", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["demo"], help="what to run")
    args, rest = parser.parse_known_args(argv)
    if args.command == "demo":
        from tfmot_lite import demo

        demo.main(rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
