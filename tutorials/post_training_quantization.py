"""Post-training quantization of a trained Keras model, every mode, on tfmot-lite.

The TensorFlow guide "Post-training quantization" in one call per mode:
`tfmot_lite.export.quantize_post_training(model, mode, representative_data)`.

1. Train a float Conv-BatchNorm-ReLU CNN (the demo's model).
2. Convert it five ways: float32 (the baseline), dynamic range (int8
   weights, float activations), float16 weights, full integer int8
   (calibrated on 200 training images; `int8_io=True` gives an int8
   interface) and 16x8 (int16 activations, int8 weights).
3. Run each .tflite in LiteRT: test accuracy, size raw and gzipped, and
   median latency of one inference (XNNPACK, one thread by default).

Trains on the digits bundled with scikit-learn (upsampled to 32x32x3, no
download); `--quick` is a smoke run.

    python tutorials/post_training_quantization.py
    python tutorials/post_training_quantization.py --quick
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from tfmot_lite import data, export  # noqa: E402
from tfmot_lite.example_models import build_cnn  # noqa: E402
from tfmot_lite.export.ptq import CALIBRATED, MODES, calibration_samples  # noqa: E402


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15, help="float training epochs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--latency-runs", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="LiteRT threads")
    parser.add_argument("--int8-io", action="store_true", help="int8 interface for int8")
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--verbose", type=int, default=2)
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.latency_runs = 3, 20
    return args


def format_table(rows):
    header = (f"{'mode':<15}{'accuracy':>9}{'vs float':>10}{'bytes':>9}"
              f"{'gzipped':>9}{'latency us':>12}")
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(
            f"{r['mode']:<15}{r['accuracy']:>9.4f}{r['delta_points']:>+10.2f}"
            f"{r['bytes']:>9,}{r['gzip_bytes']:>9,}{r['latency_us']:>12.1f}"
        )
    return "\n".join(lines)


def main(argv=None):
    args = parse_args(argv)
    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, y_test) = data.digits(image_size=32)

    # 1. Float baseline.
    model = build_cnn()
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
              verbose=args.verbose)
    keras_accuracy = model.evaluate(x_test, y_test, verbose=0)[1]

    # 2. + 3. Every post-training mode, run in LiteRT.
    representative = calibration_samples(x_train, 200)
    rows, flatbuffers = [], {}
    for mode in MODES:
        flatbuffer = export.quantize_post_training(
            model, mode,
            representative_data=representative if mode in CALIBRATED else None,
            int8_io=args.int8_io and mode == "int8",
        )
        flatbuffers[mode] = flatbuffer
        accuracy = export.TFLiteModel(flatbuffer, num_threads=args.threads).accuracy(
            x_test, y_test)
        rows.append({
            "mode": mode,
            "accuracy": accuracy,
            "bytes": len(flatbuffer),
            "gzip_bytes": export.gzipped_size(flatbuffer),
            "latency_us": export.measure_latency(
                flatbuffer, x_test[0], runs=args.latency_runs,
                num_threads=args.threads),
        })
    float_accuracy = rows[0]["accuracy"]
    for row in rows:
        row["delta_points"] = 100 * (row["accuracy"] - float_accuracy)

    print(f"Keras float model: test accuracy {keras_accuracy:.4f}")
    print(f"LiteRT, {args.threads} thread(s), median of {args.latency_runs} runs:")
    print(format_table(rows))
    return {"rows": rows, "keras_accuracy": keras_accuracy, "tflite": flatbuffers}


if __name__ == "__main__":
    main()
