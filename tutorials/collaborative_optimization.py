"""Collaborative optimization: prune, cluster, then quantize without undoing it.

The TensorFlow guides "Sparsity / cluster / sparsity-and-cluster preserving
quantization aware training" (PQAT, CQAT, PCQAT), with `import tfmot_lite
as tfmot` in place of `tensorflow_model_optimization`:

1. Train a float CNN (three Conv-BatchNorm-ReLU stages, a 1x1 stage, a Dense
   head) on the digits bundled with scikit-learn (no download).
2. QAT: `quantize_model(float)`, fine-tuned: the int8 baseline.
3. PQAT: prune to 50% (`prune_low_magnitude`, `ConstantSparsity`), strip,
   then `quantize_apply(quantize_annotate_model(pruned),
   Default8BitPrunePreserveQuantizeScheme())`: QAT keeps the zeros.
4. CQAT: cluster to 8 values per kernel (`cluster_weights`), strip, then
   `Default8BitClusterPreserveQuantizeScheme()`: QAT keeps the clusters.
5. PCQAT: prune to 50%, cluster with `preserve_sparsity=True`, strip, then
   `Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=True)`.
6. Export every model with the stock TFLite converter and compare: accuracy
   in LiteRT, bytes raw and gzipped (zeros and repeated values compress:
   where the download gets smaller), LiteRT latency (one thread, XNNPACK;
   the x86 wheel runs sparse and dense int8 kernels alike, so latency stays
   flat), and per int8 kernel the fraction of zeros and the number of
   distinct values (per output channel for per-channel kernels).

Steps 2-5 run twice: as above, and "distilled", every fine-tune (pruning,
clustering and QAT) against the float model's soft targets
(`tfmot.distillation.distill(model, float_model)`, the same epochs and
learning rates); each technique's row is followed by its distilled row
(`--quick`: PCQAT's only, which distills all three kinds of fine-tune).

    python tutorials/collaborative_optimization.py
    python tutorials/collaborative_optimization.py --quick
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

import tfmot_lite as tfmot  # noqa: E402
from tfmot_lite import data, export  # noqa: E402
from tfmot_lite.example_models import build_cnn  # noqa: E402

KERNEL_OPS = {"CONV_2D": 0, "DEPTHWISE_CONV_2D": 3, "FULLY_CONNECTED": 0}


def fit(model, x, y, learning_rate, epochs, args, callbacks=(), teacher=None):
    """Trains `model` (through `distill` when a teacher is given); returns it."""
    trained = model if teacher is None else tfmot.distillation.distill(model, teacher)
    trained.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    # A held-out tenth shows validation accuracy as it trains; silent runs
    # (`--verbose 0`) would print none, so they train on it too.
    # BuildOptimizerFirst: TensorFlow traces the first training step once.
    trained.fit(x, y, epochs=epochs, batch_size=args.batch_size,
                validation_split=0.1 if args.verbose else 0.0,
                callbacks=[*callbacks, tfmot.fast.BuildOptimizerFirst()],
                verbose=args.verbose)
    return model


def kernel_report(flatbuffer):
    """`(operator, shape, zeros, unique, max unique per channel)` per int8
    kernel, read from the .tflite file by `tfmot_lite.export.weight_stats`."""
    from tfmot_lite.export import weight_stats

    return [(s.op_type, s.shape, s.zero_fraction, s.unique_values,
             s.max_unique_per_channel)
            for s in weight_stats(flatbuffer) if s.op_type in KERNEL_OPS]


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12, help="float training epochs")
    parser.add_argument("--prune-epochs", type=int, default=3)
    parser.add_argument("--cluster-epochs", type=int, default=3)
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--clusters", type=int, default=8)
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--latency-runs", type=int, default=200)
    parser.add_argument("--quick", action="store_true",
                        help="a short smoke run, with one distilled twin (PCQAT)")
    parser.add_argument("--verbose", type=int, default=2)
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.prune_epochs, args.cluster_epochs = 4, 1, 1
        args.qat_epochs, args.latency_runs = 1, 20
    # PCQAT's twin distills all three fine-tunes (pruning, clustering, QAT).
    args.distilled = ("PCQAT",) if args.quick else SCHEMES
    return args


SCHEMES = ("QAT", "PQAT", "CQAT", "PCQAT")


def quantization_aware_models(float_model, x, y, args, teacher=None, schemes=SCHEMES):
    """Steps 2-5: `{scheme: trained QAT model}` for each of `schemes` (of
    "QAT", "PQAT", "CQAT", "PCQAT"), every fine-tune distilled from
    `teacher` when one is given."""
    sparsity, clustering = tfmot.sparsity.keras, tfmot.clustering.keras
    quantization, combine = tfmot.quantization.keras, tfmot.experimental.combine

    def annotate_and_apply(model, scheme):
        return quantization.quantize_apply(quantization.quantize_annotate_model(model), scheme)

    # Pruned and clustered starting points (stripped: plain Keras models),
    # each trained only when a scheme starts from it.
    models = {}
    if "QAT" in schemes:
        models["QAT"] = quantization.quantize_model(float_model)
    if "PQAT" in schemes or "PCQAT" in schemes:
        pruned = sparsity.prune_low_magnitude(
            float_model,
            pruning_schedule=sparsity.ConstantSparsity(args.sparsity, 0, frequency=10))
        pruned = sparsity.strip_pruning(fit(
            pruned, x, y, 1e-3, args.prune_epochs, args, [sparsity.UpdatePruningStep()],
            teacher))
    if "PQAT" in schemes:
        models["PQAT"] = annotate_and_apply(
            pruned, combine.Default8BitPrunePreserveQuantizeScheme())
    if "CQAT" in schemes:
        clustered = clustering.strip_clustering(fit(
            clustering.cluster_weights(float_model, args.clusters), x, y, 1e-3,
            args.cluster_epochs, args, teacher=teacher))
        models["CQAT"] = annotate_and_apply(
            clustered, combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=False))
    if "PCQAT" in schemes:
        sparse_clustered = clustering.strip_clustering(fit(
            clustering.cluster_weights(pruned, args.clusters, preserve_sparsity=True), x, y,
            1e-3, args.cluster_epochs, args, teacher=teacher))
        models["PCQAT"] = annotate_and_apply(
            sparse_clustered,
            combine.Default8BitClusterPreserveQuantizeScheme(preserve_sparsity=True))

    # Quantization-aware fine-tuning of each.
    for model in models.values():
        fit(model, x, y, 1e-4, args.qat_epochs, args, teacher=teacher)
    return models


def main(argv=None):
    import tensorflow as tf

    args = parse_args(argv)
    keras.utils.set_random_seed(0)
    (x, y), (xt, yt) = data.digits(image_size=32)

    # 1. Float baseline.
    float_model = fit(build_cnn(pointwise_filters=64), x, y, 3e-3, args.epochs, args)

    plain = quantization_aware_models(float_model, x, y, args)
    distilled = quantization_aware_models(float_model, x, y, args, teacher=float_model,
                                          schemes=args.distilled)
    keras_models = {}
    for name in plain:  # each technique beside its distilled twin
        keras_models[name] = plain[name]
        if name in distilled:
            keras_models[name + " distilled"] = distilled[name]

    # 6. Export and compare.
    flatbuffers = {"float": export.to_tflite(float_model)}
    for name, model in keras_models.items():
        flatbuffers[name] = export.to_tflite(model, optimizations=[tf.lite.Optimize.DEFAULT])
    rows, agreement, kernels = [], {}, {}
    for name, flatbuffer in flatbuffers.items():
        # Accuracy, size and latency (on the first test image), and top-1
        # agreement with the Keras model the file came from.
        report = export.measure(flatbuffer, data=xt, labels=yt,
                                keras_model=keras_models.get(name),
                                latency_runs=args.latency_runs)
        if name in keras_models:
            agreement[name] = report.agreement
            kernels[name] = kernel_report(flatbuffer)
        rows.append({
            "model": name,
            "accuracy": report.accuracy,
            "bytes": report.bytes,
            "gzip_bytes": report.gzip_bytes,
            "latency_us": report.latency_us,
        })

    print("\nInt8 kernels: zeros, distinct int8 values, most distinct values in one "
          "output channel")
    for name, report in kernels.items():
        print(f"\n{name} (LiteRT vs Keras top-1 agreement {agreement[name]:.4f})")
        print(f"  {'operator':<16} {'shape':<14} {'zeros':>7} {'unique':>7} {'max/ch':>7}")
        for op, shape, zeros, unique, per_channel in report:
            print(f"  {op:<16} {'x'.join(map(str, shape)):<14} {zeros:>7.1%} {unique:>7} "
                  f"{per_channel:>7}")
    print(f"\n{'model':<16} {'accuracy':>9} {'bytes':>9} {'gzip bytes':>11} {'latency us':>11}")
    for r in rows:
        print(f"{r['model']:<16} {r['accuracy']:>9.4f} {r['bytes']:>9} {r['gzip_bytes']:>11} "
              f"{r['latency_us']:>11.1f}")
    return {"rows": rows, "agreement": agreement, "kernels": kernels}


if __name__ == "__main__":
    main()
