"""The `tfmot-lite` command line.

    tfmot-lite demo [--quick]             the pruning workflow on the bundled digits
    tfmot-lite inspect MODEL.tflite       per-operator weights, zeros, sparse storage
    tfmot-lite xnnpack-check MODEL.keras  can XNNPACK run this model sparse?
"""

import argparse
import os
import sys


def _inspect(path):
    from tfmot_lite.export import inspect_tflite

    print(inspect_tflite(path))
    return 0


def _xnnpack_check(path):
    import keras

    from tfmot_lite.sparsity.keras import xnnpack_sparsity_report

    report = xnnpack_sparsity_report(keras.models.load_model(path))
    print(report)
    return 0 if not report.findings else 1


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(
        prog="tfmot-lite", description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="run the end-to-end pruning demo", add_help=False)
    inspect = commands.add_parser("inspect", help="inspect a .tflite file")
    inspect.add_argument("path")
    check = commands.add_parser("xnnpack-check", help="check a .keras model for XNNPACK sparse inference")
    check.add_argument("path")
    args, rest = parser.parse_known_args(argv)
    if args.command == "demo":
        from tfmot_lite import demo

        demo.main(rest)
        return 0
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.command == "inspect":
        return _inspect(args.path)
    return _xnnpack_check(args.path)


if __name__ == "__main__":
    sys.exit(main())
