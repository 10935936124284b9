"""Recurrent models on device: LSTM and GRU, pruned, clustered, quantized.

Reads the digits bundled with scikit-learn (1,797 real 8x8 images, no
download) as sequences: each image is 8 time steps of 8 features, one row of
pixels per step. For an LSTM model and a GRU model (`Input((8, 8))`, the
recurrent layer with 32 units, `Dense(10)`) it

1. trains the float model and times the training;
2. prunes it to 50% sparsity (`prune_low_magnitude` with a `PolynomialDecay`
   schedule and `UpdatePruningStep`), fine-tunes and strips it: the LSTM's
   and GRU's input kernel and recurrent kernel are pruned, as is the Dense
   head;
3. clusters it to 16 shared values per kernel (`cluster_weights`),
   fine-tunes and strips it;
4. exports the float model in every post-training mode: float32, dynamic
   range (int8 weights), int8 (calibrated on training sequences) and 16x8
   (int16 activations, int8 weights), and the pruned and clustered models in
   float32, each with `tfmot_lite.export.export_model`, which runs the
   .tflite in LiteRT.

It prints one table per model: test accuracy of the .tflite, its top-1
agreement with the Keras model it came from, size raw and gzipped, the
zeros and the most unique values per output channel in its kernels as
stored, and LiteRT latency of one sequence (XNNPACK, one thread). Two
lines per model read the recurrent layer's kernels back out of the .tflite
files with `weight_stats`: the pruned ones keep half zeros, the clustered
ones at most 16 values; and how many zeros each mode stores.

How Keras 3 RNNs reach TFLite: only unrolled. Keras 3 runs the time loop as
a TensorFlow `while_loop` over TensorLists, which the converter rejects, and
tf_keras' fused UNIDIRECTIONAL_SEQUENCE_LSTM operator is not produced for
Keras 3 layers. tfmot-lite's export unrolls every recurrent layer on a copy
of the model (same weights, `unroll=True`): one set of FULLY_CONNECTED /
LOGISTIC / TANH / MUL / ADD operators per time step. So the sequence length
must be fixed when the model is built (`keras.Input((8, 8))` here; a model
built for `(None, 8)` gets an error saying what to change), and the file and
its latency grow with the length.

About latency: XNNPACK's sparse kernels target ARM; the x86 LiteRT wheel
runs the pruned model with the same dense kernels, so it shows no sparse
speedup here (the pruned file is smaller and gzips better, it is not faster).
16x8 runs on LiteRT's built-in kernels (XNNPACK has none for 16-bit
activations): several times slower.

About size: the weights here are small (17 to 22 KB as float32 in a 47 KB
file), so the unrolled graph's operators and tensors make up half of the
float file. Integer modes store one int32 bias per matrix multiply per time
step (each step's input has its own scale), so an int8 file can be larger
than the dynamic-range one, the GRU's even than the float one; gzipped it is
smaller.

Known issue (TensorFlow's converter, not tfmot-lite's training): a GRU with
`reset_after=True` (Keras' default) converted to 16x8 loses its recurrent
kernel: the one tensor that every unrolled step multiplies the state by is
stored as all zero codes, and the model predicts nearly at random. It takes
a nonzero recurrent bias (a freshly built GRU, whose biases are zero,
converts correctly) at the first step, whose input is the zero initial state
(calibrated range [0, 0]). The table shows it: the GRU's int16x8 row, and
100% zeros in the last line. int8 is not affected (the converter gives the
first step its own copy of the kernel), nor is the LSTM (its recurrent
multiply has no bias); `GRU(..., reset_after=False)` converts correctly to
16x8.

5. quantization-aware trains the float model (`quantize_model`, a short
   fine-tune at a tenth of the learning rate) and exports it int8: every
   unrolled step's FULLY_CONNECTED / ADD / LOGISTIC / TANH / MUL runs
   integer, on the ranges QAT learned (`tfmot_lite/quantization/recurrent.py`).

    python tutorials/recurrent_models.py            # about a minute on CPU
    python tutorials/recurrent_models.py --quick    # a smoke run (the exports take most of it)

This is tfmot's Keras API with one changed import: `import tfmot_lite as tfmot`.
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfmot_lite as tfmot  # noqa: E402
from tfmot_lite import data, export  # noqa: E402
from tfmot_lite.export.ptq import calibration_samples  # noqa: E402

TIMESTEPS, FEATURES = 8, 8
RECURRENT = {"lstm": (keras.layers.LSTM, 4), "gru": (keras.layers.GRU, 3)}
PTQ_MODES = ("dynamic_range", "int8", "int16x8")


def digit_sequences(test_fraction=0.2, seed=0):
    """`(x_train, y_train), (x_test, y_test)`: the 8x8 digits in [0, 1] as
    sequences of 8 rows (time steps) of 8 pixels (features); the same seeded
    split as `tfmot_lite.data.digits`."""
    (x_train, y_train), (x_test, y_test) = data.digits(
        image_size=8, channels=1, test_fraction=test_fraction, seed=seed)
    shape = (-1, TIMESTEPS, FEATURES)
    return (x_train.reshape(shape), y_train), (x_test.reshape(shape), y_test)


def build_model(kind, units=32, classes=10):
    """`Input((8, 8))` -> LSTM or GRU -> Dense: the sequence length is fixed,
    which the unrolled export needs."""
    layer, _ = RECURRENT[kind]
    inputs = keras.Input((TIMESTEPS, FEATURES))
    x = layer(units, name=kind)(inputs)
    outputs = keras.layers.Dense(classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=f"digits_{kind}")


def compile_model(model, learning_rate):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def fit(model, x, y, learning_rate, epochs, batch_size, callbacks=()):
    """Trains `model`; returns the seconds it took."""
    compile_model(model, learning_rate)
    start = time.perf_counter()
    # BuildOptimizerFirst: TensorFlow traces the first training step once.
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0,
              callbacks=[*callbacks, tfmot.fast.BuildOptimizerFirst()])
    return time.perf_counter() - start


def recurrent_kernels(stats, kind, units):
    """The recurrent layer's input kernel and recurrent kernel among a
    .tflite's `weight_stats`, found by their TFLite shapes
    (gates * units, features) and (gates * units, units)."""
    rows = RECURRENT[kind][1] * units
    return {
        "kernel": [s for s in stats if s.shape == (rows, FEATURES)],
        "recurrent_kernel": [s for s in stats if s.shape == (rows, units)],
    }


def optimize_and_export(kind, splits, args, output_dir):
    """Steps 1-4 for one recurrent layer type; returns its figures."""
    (x_train, y_train), (x_test, y_test) = splits
    sparsity, clustering = tfmot.sparsity.keras, tfmot.clustering.keras

    # 1. The float model.
    model = build_model(kind, args.units)
    train_seconds = fit(model, x_train, y_train, args.learning_rate, args.epochs,
                        args.batch_size)
    float_accuracy = model.evaluate(x_test, y_test, verbose=0)[1]

    # 2. Prune to 50%: sparsity ramps from 0 over the first half of the
    #    fine-tuning (masks updated every half epoch; `end_step` a multiple of
    #    the frequency, so the last update applies the target exactly), then
    #    the masks stay while the remaining weights recover.
    steps_per_epoch = int(np.ceil(len(x_train) / args.batch_size))
    frequency = max(steps_per_epoch // 2, 1)
    end_step = frequency * 2 * max(args.fine_tune_epochs // 2, 1)
    pruned = sparsity.prune_low_magnitude(
        model,
        pruning_schedule=sparsity.PolynomialDecay(
            initial_sparsity=0.0, final_sparsity=args.sparsity, begin_step=0,
            end_step=end_step, frequency=frequency),
    )
    prune_seconds = fit(pruned, x_train, y_train, args.learning_rate / 3,
                        args.fine_tune_epochs, args.batch_size,
                        [sparsity.UpdatePruningStep()])
    pruned = sparsity.strip_pruning(pruned)

    # 3. Cluster every kernel to 16 shared values; centroids train during
    #    the fine-tune, no callback needed.
    clustered = clustering.cluster_weights(
        model, number_of_clusters=args.clusters,
        cluster_centroids_init=clustering.CentroidInitialization.KMEANS_PLUS_PLUS)
    cluster_seconds = fit(clustered, x_train, y_train, args.learning_rate / 10,
                          args.fine_tune_epochs, args.batch_size)
    clustered = clustering.strip_clustering(clustered)

    # 5. QAT from the float model.
    qat = tfmot.quantization.keras.quantize_model(model)
    qat_seconds = fit(qat, x_train, y_train, args.learning_rate / 10,
                      args.fine_tune_epochs, args.batch_size)

    # 4. Export: the float model in every post-training mode, the pruned and
    #    clustered ones in float32. Each .tflite runs in LiteRT on the test
    #    set and is compared with the Keras model it came from.
    representative = calibration_samples(x_train, 200)
    variants = [("float", model, "float32")]
    variants += [("float", model, mode) for mode in PTQ_MODES]
    variants += [(f"pruned {args.sparsity:.0%}", pruned, "float32"),
                 (f"clustered {args.clusters}", clustered, "float32"),
                 ("QAT", qat, "int8")]
    reports = []
    for variant, keras_model, mode in variants:
        path = os.path.join(output_dir, f"{kind}_{variant.split()[0]}_{mode}.tflite")
        report = export.export_model(
            keras_model, mode, path=path, data=x_test, labels=y_test,
            representative_data=representative if mode in ("int8", "int16x8") else None,
            latency_runs=args.latency_runs,
        )
        reports.append((variant, report))

    # The recurrent layer's kernels as stored in each file (a tensor shared by
    # every time step is counted once; int8 may give the first step its own copy).
    stored = {}
    for variant, report in reports:
        kernels = recurrent_kernels(export.weight_stats(report.path), kind, args.units)
        stored[(variant.split()[0], report.mode)] = {
            name: [{"zeros": s.zero_fraction, "unique": s.unique_values} for s in found]
            for name, found in kernels.items()
        }
    return {
        "kind": kind,
        "float_accuracy": float(float_accuracy),
        "train_seconds": train_seconds,
        "prune_seconds": prune_seconds,
        "cluster_seconds": cluster_seconds,
        "qat_seconds": qat_seconds,
        "epochs": args.epochs,
        "fine_tune_epochs": args.fine_tune_epochs,
        "reports": reports,
        "stored_kernels": stored,
    }


def run(args, output_dir=None, seed=0):
    """Runs the tutorial; returns a dict of the measured figures."""
    keras.utils.set_random_seed(seed)
    splits = digit_sequences(seed=seed)
    output_dir = output_dir or tempfile.mkdtemp(prefix="recurrent_models_")
    os.makedirs(output_dir, exist_ok=True)
    start = time.perf_counter()
    models = {kind: optimize_and_export(kind, splits, args, output_dir)
              for kind in RECURRENT}
    return {
        "models": models,
        "output_dir": output_dir,
        "sparsity": args.sparsity,
        "clusters": args.clusters,
        "seconds": time.perf_counter() - start,
    }


def _stored(kernels, key, name):
    return "/".join(
        f"{k['zeros']:.1%}" if key == "zeros" else str(k["unique"]) for k in kernels[name]
    ) or "not found"


def format_table(figures):
    """One model's table, with its training times and what `weight_stats`
    reads from the recurrent kernels of the .tflite files."""
    f = figures
    name = f["kind"].upper()
    lines = [(
        f"{name}: float Keras test accuracy {f['float_accuracy']:.4f}, trained "
        f"{f['epochs']} epochs in {f['train_seconds']:.1f} s (fine-tunes of "
        f"{f['fine_tune_epochs']} epochs: pruning {f['prune_seconds']:.1f} s, "
        f"clustering {f['cluster_seconds']:.1f} s, QAT {f['qat_seconds']:.1f} s)"
    )]
    rows = [("variant", "mode", "accuracy", "agreement", "bytes", "gzipped", "zeros",
             "max unique/ch", "latency us")]
    for variant, r in f["reports"]:
        rows.append((
            variant, r.mode, f"{r.accuracy:.4f}", f"{r.agreement:.4f}",
            f"{r.bytes:,}", f"{r.gzip_bytes:,}", f"{r.sparsity:.1%}",
            "-" if r.max_unique_per_channel is None else str(r.max_unique_per_channel),
            f"{r.latency_us:.1f}",
        ))
    lines.append(export.text_table(rows))
    k = f["stored_kernels"]
    pruned = next(v for (variant, _), v in k.items() if variant == "pruned")
    clustered = next(v for (variant, _), v in k.items() if variant == "clustered")
    lines.append(
        f"{name} kernels in the .tflite files (weight_stats): pruned zeros: kernel "
        f"{_stored(pruned, 'zeros', 'kernel')}, recurrent kernel "
        f"{_stored(pruned, 'zeros', 'recurrent_kernel')}; clustered unique values: "
        f"kernel {_stored(clustered, 'unique', 'kernel')}, recurrent kernel "
        f"{_stored(clustered, 'unique', 'recurrent_kernel')}"
    )
    lines.append(
        f"{name} float model's recurrent kernel zeros as stored: " + ", ".join(
            f"{mode} {_stored(v, 'zeros', 'recurrent_kernel')}"
            for (variant, mode), v in k.items() if variant == "float")
    )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20, help="float training epochs")
    parser.add_argument("--fine-tune-epochs", type=int, default=6)
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=1e-2,
                        help="float training; the fine-tunes use a third and a tenth")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--clusters", type=int, default=16)
    parser.add_argument("--latency-runs", type=int, default=200)
    parser.add_argument("--output-dir", default=None, help="where the .tflite files go")
    parser.add_argument("--quick", action="store_true",
                        help="fewer epochs and latency runs: a smoke run, not a result")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.fine_tune_epochs, args.latency_runs = 6, 1, 20
    results = run(args, output_dir=args.output_dir)
    for figures in results["models"].values():
        print(format_table(figures))
        print()
    files = sum(len(f["reports"]) for f in results["models"].values())
    print(f"{files} .tflite files in {results['output_dir']}; "
          f"{results['seconds']:.0f} s in all")
    return results


if __name__ == "__main__":
    main()
