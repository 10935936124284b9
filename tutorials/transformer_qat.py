"""Quantization-aware training of a vision transformer, to integer TFLite.

Reads the digits bundled with scikit-learn (1,797 real 8x8 images, no
download), upsampled to 32x32 and cut into 16 patches of 8x8. A small ViT
(patch embedding, learned position embeddings, two pre-norm encoder blocks
of LayerNormalization, MultiHeadAttention, residual Adds and a GELU MLP, a
final LayerNormalization, mean pooling, a Dense head) is

1. trained in float;
2. quantized after training (PTQ), calibrated on 200 training images: int8,
   and 16x8 (int16 activations, int8 weights);
3. quantization-aware trained from the float model (`quantize_model`, a
   short fine-tune): int8 (`Default8BitQuantizeScheme`) and 16x8
   (`Default16x8QuantizeScheme`).

Each model is exported with `tfmot_lite.export.export_model` and runs in
LiteRT on the test set. The table gives, per variant: test accuracy of the
.tflite, its top-1 agreement with the Keras model it came from (for QAT:
the Keras QAT model, whose fake-quant simulates the integer model), the
share of operators that run integer, size, and LiteRT latency of one image.
A last line lists the operators of each integer file that still touch a
float tensor (beyond the QUANTIZE/DEQUANTIZE of the float interface).

Where QAT puts its ranges: TFLite has no integer layer-normalization or
attention kernel; the converter runs them as MEAN, SUB, MUL, RSQRT,
FULLY_CONNECTED, BATCH_MATMUL, SELECT_V2, SOFTMAX and ADD operators, and
tfmot-lite's QAT puts a range after each one (see
`tfmot_lite/quantization/layer_norm.py` and `attention.py`), so the stock
converter (`optimizations=[DEFAULT]`) emits a fully integer model.

About 16x8: LiteRT runs 16-bit activations on its reference kernels
(XNNPACK has none), so those rows are several times slower than int8. A 16x8
QAT model converts from its trained weights with ranges calibrated in the
converter's 16x8 mode (its QAT path has no int16 GELU); at 16 bits the
calibrated and the trained ranges differ by far less than one int8 step.

    python tutorials/transformer_qat.py            # a few minutes on CPU
    python tutorials/transformer_qat.py --quick    # a smoke run, not a result

The position embedding is KerasHub's `PositionEmbedding` (`pip install
keras-hub`, the `[hub]` extra). This is tfmot's Keras API with one changed
import: `import tfmot_lite as tfmot`.
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import tfmot_lite as tfmot  # noqa: E402
from tfmot_lite import data, export  # noqa: E402
from tfmot_lite.export.ptq import calibration_samples  # noqa: E402

IMAGE, PATCH = 32, 8
TOKENS = (IMAGE // PATCH) ** 2


def build_vit(dim=64, heads=4, blocks=2, mlp=128, classes=10):
    """A pre-norm ViT on 8x8 patches of 32x32 grey images."""
    from keras_hub.layers import PositionEmbedding

    layers = keras.layers
    inputs = keras.Input((IMAGE, IMAGE, 1))
    x = layers.Conv2D(dim, PATCH, strides=PATCH, name="patches")(inputs)
    x = layers.Reshape((TOKENS, dim))(x)
    x = layers.Add()([x, PositionEmbedding(TOKENS, name="positions")(x)])
    for i in range(blocks):
        h = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_norm1")(x)
        h = layers.MultiHeadAttention(heads, dim // heads, name=f"block{i}_attention")(h, h)
        x = layers.Add()([x, h])
        h = layers.LayerNormalization(epsilon=1e-6, name=f"block{i}_norm2")(x)
        h = layers.Dense(mlp, activation="gelu", name=f"block{i}_mlp1")(h)
        h = layers.Dense(dim, name=f"block{i}_mlp2")(h)
        x = layers.Add()([x, h])
    x = layers.LayerNormalization(epsilon=1e-6, name="norm")(x)
    x = layers.GlobalAveragePooling1D()(x)
    outputs = layers.Dense(classes, name="logits")(x)
    return keras.Model(inputs, outputs, name="digits_vit")


def fit(model, x, y, learning_rate, epochs, batch_size):
    """Compiles and trains `model`; returns the seconds it took."""
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    # BuildOptimizerFirst: TensorFlow traces the first training step once.
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0,
              callbacks=[tfmot.fast.BuildOptimizerFirst()])
    return time.perf_counter() - start


def run(args, output_dir=None, seed=0):
    """Runs the tutorial; returns a dict of the measured figures."""
    keras.utils.set_random_seed(seed)
    (x_train, y_train), (x_test, y_test) = data.digits(
        image_size=IMAGE, channels=1, seed=seed)
    output_dir = output_dir or tempfile.mkdtemp(prefix="transformer_qat_")
    os.makedirs(output_dir, exist_ok=True)
    quantization = tfmot.quantization.keras

    # 1. The float model.
    model = build_vit()
    train_seconds = fit(model, x_train, y_train, args.learning_rate, args.epochs,
                        args.batch_size)
    float_accuracy = model.evaluate(x_test, y_test, verbose=0)[1]

    # 3. QAT from the float model, int8 and 16x8: a short fine-tune at a
    #    tenth of the learning rate.
    qat_seconds = {}
    qat_models = {}
    for mode, scheme in (("int8", quantization.Default8BitQuantizeScheme()),
                         ("int16x8", quantization.Default16x8QuantizeScheme())):
        qat = quantization.quantize_model(model, scheme)
        qat_seconds[mode] = fit(qat, x_train, y_train, args.learning_rate / 10,
                                args.qat_epochs, args.batch_size)
        qat_models[mode] = qat

    # 2 and 3: export and run every variant in LiteRT.
    representative = calibration_samples(x_train, 200)
    variants = [("float", model, "float32"), ("PTQ", model, "int8"),
                ("PTQ", model, "int16x8"), ("QAT", qat_models["int8"], "int8"),
                ("QAT", qat_models["int16x8"], "int16x8")]
    reports, floats, failures = [], {}, {}
    for variant, keras_model, mode in variants:
        path = os.path.join(output_dir, f"vit_{variant.lower()}_{mode}.tflite")
        try:
            report = export.export_model(
                keras_model, mode, path=path, data=x_test, labels=y_test,
                representative_data=representative if mode != "float32" else None,
                latency_runs=args.latency_runs,
            )
        except Exception as error:  # noqa: BLE001 - the table says which and why
            failures[(variant, mode)] = str(error).strip().splitlines()[-1]
            continue
        reports.append((variant, report))
        if mode != "float32":
            floats[(variant, mode)] = export.float_operators(path)
    # The Keras QAT models' accuracy: the reports' reference predictions
    # (an export that failed has none: evaluated here).
    keras_accuracy = {r.mode: r.keras_accuracy for variant, r in reports if variant == "QAT"}
    return {
        "float_accuracy": float(float_accuracy),
        "qat_keras_accuracy": {
            mode: float(keras_accuracy[mode] if mode in keras_accuracy
                        else m.evaluate(x_test, y_test, verbose=0)[1])
            for mode, m in qat_models.items()},
        "train_seconds": train_seconds,
        "qat_seconds": qat_seconds,
        "epochs": args.epochs,
        "qat_epochs": args.qat_epochs,
        "reports": reports,
        "float_operators": floats,
        "failures": failures,
        "output_dir": output_dir,
    }


def format_table(figures):
    f = figures
    lines = [(
        f"Digits ViT: float Keras test accuracy {f['float_accuracy']:.4f}, trained "
        f"{f['epochs']} epochs in {f['train_seconds']:.1f} s; QAT fine-tunes of "
        f"{f['qat_epochs']} epochs: int8 {f['qat_seconds']['int8']:.1f} s, 16x8 "
        f"{f['qat_seconds']['int16x8']:.1f} s (Keras QAT accuracy int8 "
        f"{f['qat_keras_accuracy']['int8']:.4f}, 16x8 "
        f"{f['qat_keras_accuracy']['int16x8']:.4f})"
    )]
    rows = [("variant", "mode", "accuracy", "agreement", "integer ops", "bytes",
             "gzipped", "latency us")]
    for variant, r in f["reports"]:
        rows.append((variant, r.mode, f"{r.accuracy:.4f}", f"{r.agreement:.4f}",
                     f"{r.int8_fraction:.0%}", f"{r.bytes:,}", f"{r.gzip_bytes:,}",
                     f"{r.latency_us:.1f}"))
    lines.append(export.text_table(rows))
    for (variant, mode), message in f["failures"].items():
        lines.append(f"{variant} {mode}: the converter fails: {message}")
    lines.append("Operators touching a float tensor (beyond the float interface): " + "; ".join(
        f"{variant} {mode}: {', '.join(ops) if ops else 'none'}"
        for (variant, mode), ops in f["float_operators"].items()))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40, help="float training epochs")
    parser.add_argument("--qat-epochs", type=int, default=5)
    parser.add_argument("--learning-rate", type=float, default=2e-3,
                        help="float training; QAT uses a tenth")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--latency-runs", type=int, default=200)
    parser.add_argument("--output-dir", default=None, help="where the .tflite files go")
    parser.add_argument("--quick", action="store_true",
                        help="fewer epochs and latency runs: a smoke run, not a result")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.qat_epochs, args.latency_runs = 8, 1, 20
    start = time.perf_counter()
    figures = run(args, output_dir=args.output_dir)
    print(format_table(figures))
    print(f"{len(figures['reports'])} .tflite files in {figures['output_dir']}; "
          f"{time.perf_counter() - start:.0f} s in all")
    return figures


if __name__ == "__main__":
    main()
