"""The `tfmot-lite` command line (also `python -m tfmot_lite.cli`).

    tfmot-lite demo [--dataset digits|cifar10] [--output DIR] [--quick]
    tfmot-lite check MODEL.keras --policy xnnpack      (alias: xnnpack-check)
    tfmot-lite export MODEL.keras --mode int8 --representative-data X.npy -o OUT.tflite
        (a model with several inputs takes X.npz: one array per input name)
    tfmot-lite inspect MODEL.tflite
    tfmot-lite bench MODEL.tflite [--threads N]

`check` exits with status 1 when the model cannot be pruned for the policy.
Errors (a missing file, a file that is not a Keras or .tflite model, a wrong
mode, missing representative data) print one line to stderr and exit with
status 2 (`main` raises `SystemExit(2)`); set TFMOT_LITE_DEBUG=1 to see the Python traceback instead.
"""

import argparse
import os
import sys

from tfmot_lite.command_line import CommandError, Parser
from tfmot_lite.command_line import run as _run
from tfmot_lite.quiet import quiet_environment

quiet_environment()


def load_keras_model(path):
    """Loads a .keras/.h5 model file, or raises a ValueError naming it."""
    import keras

    from tfmot_lite.quiet import silenced_stderr

    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"'{path}': no such file; give the path of a .keras model.")
    if os.path.isdir(path):
        raise ValueError(f"'{path}' is a directory; give the path of a .keras model file.")
    if not path.endswith((".keras", ".h5", ".hdf5")):
        raise ValueError(
            f"'{path}' is not a Keras model file: expected a .keras file saved with "
            "`model.save('model.keras')`."
        )
    damage = _keras_archive_damage(path)
    if damage:
        raise ValueError(f"'{path}' is not a readable Keras model: {damage}.")
    try:
        with silenced_stderr():
            return keras.models.load_model(path)
    except Exception as error:  # noqa: BLE001 - any load failure: not a model
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(
            f"'{path}' is not a readable Keras model: it could not be loaded "
            f"({type(error).__name__}{': ' + first if first else ''})."
        ) from None


def _keras_archive_damage(path):
    """Why a .keras file cannot be a Keras 3 archive (a zip holding
    config.json), or None. Keras' own message for these is misleading
    ("File not found" for a truncated file)."""
    import zipfile

    if not path.endswith(".keras"):
        return None
    advice = "save it again with `model.save('model.keras')`"
    if os.path.getsize(path) == 0:
        return f"the file is empty; {advice}"
    if not zipfile.is_zipfile(path):
        return f"not a zip archive (truncated or corrupted?); {advice}"
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as error:
        return f"a damaged zip archive ({error}); {advice}"
    if "config.json" not in names:
        return f"the archive holds no config.json, so it is no saved Keras model; {advice}"
    return None


def load_array(path, option, model=None):
    """Loads a .npy file for `option`, or raises a ValueError naming it.

    Given the `model` the arrays are inputs of, a .npz archive is also
    read: a dict {array name: array} whose names must be the model's input
    names (a ValueError names them otherwise); a model with several inputs
    needs one.
    """
    import numpy as np

    from tfmot_lite.export.convert import input_names, inputs_by_name

    if not os.path.exists(path):
        raise ValueError(f"{option} '{path}': no such file.")
    kind = ".npy array file" if model is None else ".npy or .npz file"
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as error:  # noqa: BLE001
        raise ValueError(
            f"{option} '{path}' is not a NumPy {kind} ({type(error).__name__})."
        ) from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        if model is not None and len(model.inputs) > 1:
            raise CommandError(
                f"{option} '{path}': the model '{model.name}' has {len(model.inputs)} "
                f"inputs ({', '.join(input_names(model))}); give a .npz file with one "
                "array per input name (`numpy.savez(path, **arrays)`)."
            )
        return loaded
    with loaded:
        if model is None:
            raise CommandError(f"{option} '{path}' is a .npz archive; give a .npy array file.")
        return inputs_by_name(model, {name: loaded[name] for name in loaded.files}, option)


# -- commands -------------------------------------------------------------


def _demo(args, rest):
    from tfmot_lite import demo

    demo.main(rest)
    return 0


def _check(args):
    from tfmot_lite.sparsity.keras import xnnpack_sparsity_report

    report = xnnpack_sparsity_report(load_keras_model(args.path))
    print(report)
    return 0 if not report.findings else 1


def _export(args):
    from tfmot_lite import export
    from tfmot_lite.export.ptq import CALIBRATED, check_mode
    from tfmot_lite.export.strip import is_qat

    check_mode(args.mode, "--mode")
    model = load_keras_model(args.path)
    calibrate = None
    if args.representative_data:
        calibrate = load_array(args.representative_data, "--representative-data", model)
    elif args.mode in CALIBRATED and not is_qat(model):
        raise CommandError(
            f"--mode {args.mode} (full integer) needs --representative-data FILE.npy: "
            "a few hundred typical inputs, shaped like the model's input with a "
            "batch axis first (FILE.npz with one array per input name for several inputs)."
        )
    data = load_array(args.data, "--data", model) if args.data else None
    labels = load_array(args.labels, "--labels") if args.labels else None
    output = args.output or os.path.splitext(args.path)[0] + ".tflite"
    report = export.export_model(
        model, args.mode, path=output, data=data, labels=labels,
        threads=args.threads, representative_data=calibrate, int8_io=args.int8_io,
        name=os.path.basename(output),
    )
    print(report)
    if args.json:
        export.save_json([report], args.json)
    print(f"wrote {output}")
    return 0


def _inspect(args):
    from tfmot_lite import export

    print(export.inspect_tflite(args.path))
    # How this machine's LiteRT splits it between XNNPACK and its own kernels.
    print(export.TFLiteModel(args.path).xnnpack_delegation())
    stats = export.weight_stats(args.path)
    if stats:
        print("\nweights:")
        print(export.format_weight_stats(stats))
    return 0


def _bench(args):
    from tfmot_lite import export

    if args.threads < 1 or args.runs < 1:
        raise CommandError("--threads and --runs must be positive integers.")
    runner = export.TFLiteModel(args.path, num_threads=args.threads)
    latency = export.measure_latency(
        runner.flatbuffer, runner.random_sample(), runs=args.runs,
        warmup=min(20, args.runs), num_threads=args.threads)
    shapes = {name: tuple(int(d) for d in details["shape"][1:])
              for name, details in runner.inputs.items()}
    inputs = (f"input {next(iter(shapes.values()))}" if len(shapes) == 1 else
              "inputs " + ", ".join(f"{name} {shape}" for name, shape in shapes.items()))
    print(
        f"{args.path}: {latency:.1f} us median over {args.runs} runs, "
        f"{args.threads} thread(s), LiteRT + XNNPACK, {inputs}"
    )
    return 0


def build_parser():
    parser = Parser(
        prog="tfmot-lite", description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__,
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    commands.add_parser("demo", help="train, optimize, export and report (see demo --help)",
                        add_help=False)
    for name in ("check", "xnnpack-check"):
        check = commands.add_parser(
            name, help="can this .keras model be pruned for XNNPACK's sparse inference?")
        check.add_argument("path", metavar="MODEL.keras")
        check.add_argument("--policy", choices=["xnnpack"], default="xnnpack")
    exp = commands.add_parser("export", help="convert a .keras model and report on it")
    exp.add_argument("path", metavar="MODEL.keras")
    exp.add_argument("--mode", default="float32",
                     help="float32, dynamic_range, float16, int8 or int16x8")
    exp.add_argument("--representative-data", metavar="FILE.npy",
                     help="calibration inputs for int8 / int16x8 (.npz: one array "
                     "per input name)")
    exp.add_argument("--int8-io", action="store_true", help="integer input and output")
    exp.add_argument("--data", metavar="FILE.npy",
                     help="inputs to check agreement on (.npz: one array per input name)")
    exp.add_argument("--labels", metavar="FILE.npy", help="labels of --data (accuracy)")
    exp.add_argument("--threads", type=int, default=1)
    exp.add_argument("--json", metavar="FILE.json", help="also save the report as JSON")
    exp.add_argument("-o", "--output", metavar="OUT.tflite")
    inspect = commands.add_parser(
        "inspect", help="operators, weights, XNNPACK sparse verdict, what XNNPACK runs")
    inspect.add_argument("path", metavar="MODEL.tflite")
    bench = commands.add_parser("bench", help="LiteRT latency of a .tflite model")
    bench.add_argument("path", metavar="MODEL.tflite")
    bench.add_argument("--threads", type=int, default=1)
    bench.add_argument("--runs", type=int, default=200)
    return parser


def main(argv=None):
    return _run(_dispatch, argv)


def _dispatch(argv):
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.command == "demo":
        return _demo(args, rest)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    handler = {
        "check": _check, "xnnpack-check": _check, "export": _export,
        "inspect": _inspect, "bench": _bench,
    }[args.command]
    return handler(args)

if __name__ == "__main__":
    sys.exit(main())
