"""Channel pruning, end to end: prune channels, shrink, quantize, compare.

Structured pruning removes whole output channels, so the result is a smaller
*dense* model: fewer parameters, fewer MACs and lower latency on any CPU,
with no sparse kernels needed. On the bundled handwritten digits (8x8
upsampled to 32x32x3, no download):

1. Train the demo's Conv-BN-ReLU CNN (`tfmot_lite.example_models.build_cnn`).
2. `prune_channels` it: the sparsity of a `PolynomialDecay` schedule (0 to
   50%) is the fraction of each group's channels masked, least important
   first (L2 norm of the kernel column times the BatchNorm's
   |gamma| / sqrt(var + eps)); fine-tune with `UpdatePruningStep`.
3. `shrink` it: the masked channels are removed (fewer filters, sliced
   BatchNorm and next-layer kernels); predictions are unchanged.
4. `quantize_model` the shrunk model, fine-tune (QAT) and export int8.
5. Compare dense, shrunk (float) and shrunk + QAT (int8) .tflite models:
   LiteRT accuracy, bytes, and latency (1 thread, interleaved rounds).

Steps 2 and 4 run twice: as above, and "distilled", fine-tuned against the
dense model's soft targets (`tfmot.distillation.distill(student, dense)`,
the same epochs and learning rates); both rows are in the table.

    python tutorials/channel_pruning.py            # a few minutes on CPU
    python tutorials/channel_pruning.py --quick    # a smoke run, not a result
"""

import argparse
import os
import statistics
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tfmot_lite as tfmot  # noqa: E402
from tfmot_lite import data, export  # noqa: E402
from tfmot_lite.example_models import build_cnn  # noqa: E402


def compile_model(model, learning_rate):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def latencies(flatbuffers, sample, rounds=5, runs=50):
    """Median over rounds of each model's median latency (us); the models
    alternate within each round so that machine load hits them alike."""
    times = {name: [] for name in flatbuffers}
    for r in range(rounds):
        names = list(flatbuffers) if r % 2 == 0 else list(reversed(flatbuffers))
        for name in names:
            times[name].append(
                export.measure_latency(flatbuffers[name], sample, runs=runs, warmup=10)
            )
    return {name: statistics.median(t) for name, t in times.items()}


def fine_tune(model, x, y, batch_size, epochs, learning_rate, teacher=None, callbacks=()):
    """Trains `model` (through `distill` when a teacher is given); returns it."""
    trained = model if teacher is None else tfmot.distillation.distill(model, teacher)
    compile_model(trained, learning_rate).fit(
        x, y, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=list(callbacks))
    return model


def prune_shrink_qat(dense, x_train, y_train, batch_size, prune_epochs, qat_epochs,
                     target_sparsity, teacher=None):
    """Steps 2-4 from the dense model: `(pruned, shrunk, summary, qat)`."""
    sparsity = tfmot.sparsity.keras
    # 2. Prune channels while fine-tuning: sparsity ramps from 0 to the target
    #    over the first half of the pruning epochs, then the masks stay fixed
    #    while the remaining channels recover the accuracy. Masks update every
    #    half epoch; `end_step` is an update step, so the last update reaches
    #    the target exactly.
    steps_per_epoch = int(np.ceil(len(x_train) / batch_size))
    frequency = max(steps_per_epoch // 2, 1)
    end_step = frequency * 2 * max(prune_epochs // 2, 1)
    pruned = sparsity.prune_channels(
        dense,
        pruning_schedule=sparsity.PolynomialDecay(
            initial_sparsity=0.0, final_sparsity=target_sparsity, begin_step=0,
            end_step=end_step, frequency=frequency,
        ),
    )
    fine_tune(pruned, x_train, y_train, batch_size, prune_epochs, 1e-3, teacher,
              [sparsity.UpdatePruningStep()])

    # 3. Remove the pruned channels for good.
    shrunk, summary = sparsity.shrink(pruned, return_summary=True)
    compile_model(shrunk, 1e-3)

    # 4. Quantization-aware training of the shrunk model, exported to int8.
    qat = tfmot.quantization.keras.quantize_model(shrunk)
    fine_tune(qat, x_train, y_train, batch_size, qat_epochs, 1e-4, teacher)
    return pruned, shrunk, summary, qat


def run(
    epochs=10,
    prune_epochs=6,
    qat_epochs=2,
    target_sparsity=0.5,
    batch_size=32,
    output_dir=None,
    latency_rounds=5,
    seed=0,
):
    """Runs the tutorial; returns a dict of the measured figures."""
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    (x_train, y_train), (x_test, y_test) = data.digits(image_size=32)

    # 1. The dense baseline.
    dense = compile_model(build_cnn(), 3e-3)
    dense.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=0)

    # 2.-4. Prune channels, shrink, quantization-aware training; then the same
    #       fine-tunes distilled from the dense model.
    plain = prune_shrink_qat(dense, x_train, y_train, batch_size, prune_epochs,
                             qat_epochs, target_sparsity)
    distilled = prune_shrink_qat(dense, x_train, y_train, batch_size, prune_epochs,
                                 qat_epochs, target_sparsity, teacher=dense)
    pruned, shrunk, summary, qat = plain
    shrink_diff = float(np.abs(
        shrunk.predict(x_test, verbose=0) - pruned.predict(x_test, verbose=0)
    ).max())

    # 5. Export and compare.
    output_dir = output_dir or tempfile.mkdtemp(prefix="channel_pruning_")
    os.makedirs(output_dir, exist_ok=True)
    flatbuffers = {
        "dense float": export.to_tflite(
            dense, path=os.path.join(output_dir, "dense.tflite")
        ),
    }
    int8 = dict(optimizations=[tf.lite.Optimize.DEFAULT],
                inference_input_type=tf.int8, inference_output_type=tf.int8)
    for suffix, (_, small, _, quantized) in (("", plain), (" distilled", distilled)):
        slug = suffix.replace(" ", "_")
        flatbuffers["shrunk float" + suffix] = export.to_tflite(
            small, path=os.path.join(output_dir, f"shrunk{slug}.tflite"))
        flatbuffers["shrunk + QAT int8" + suffix] = export.to_tflite(
            quantized, path=os.path.join(output_dir, f"shrunk_qat_int8{slug}.tflite"), **int8)
    # Each technique beside its distilled row.
    order = ["dense float", "shrunk float", "shrunk float distilled", "shrunk + QAT int8",
             "shrunk + QAT int8 distilled"]
    flatbuffers = {name: flatbuffers[name] for name in order}
    latency = latencies(flatbuffers, x_test[0], rounds=latency_rounds)
    rows = []
    for name, flatbuffer in flatbuffers.items():
        rows.append({
            "model": name,
            "accuracy": export.TFLiteModel(flatbuffer).accuracy(x_test, y_test),
            "bytes": len(flatbuffer),
            "latency_us": latency[name],
        })
    return {
        "rows": rows,
        "summary": summary,
        "shrink_max_abs_diff": shrink_diff,
        "target_sparsity": target_sparsity,
        "output_dir": output_dir,
    }


def format_table(results):
    base = results["rows"][0]
    table = [("model", "LiteRT accuracy", ".tflite bytes", "latency (us)")]
    for r in results["rows"]:
        table.append((
            r["model"],
            f"{r['accuracy']:.4f} ({r['accuracy'] - base['accuracy']:+.4f})",
            f"{r['bytes']:,} ({r['bytes'] / base['bytes']:.2f}x)",
            f"{r['latency_us']:.1f} ({r['latency_us'] / base['latency_us']:.2f}x)",
        ))
    lines = export.text_table(table).split("\n")
    s = results["summary"]
    lines.append(
        f"{int(results['target_sparsity'] * 100)}% of channels pruned per group; "
        f"parameters {s.params_before:,} -> {s.params_after:,}, MACs "
        f"{s.macs_before:,} -> {s.macs_after:,}; shrunk vs masked max |diff| "
        f"{results['shrink_max_abs_diff']:.2e}; files in {results['output_dir']}"
    )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="dense training epochs")
    parser.add_argument("--prune-epochs", type=int, default=6)
    parser.add_argument("--qat-epochs", type=int, default=2)
    parser.add_argument("--sparsity", type=float, default=0.5, help="fraction of channels")
    parser.add_argument("--output-dir", default=None, help="where the .tflite files go")
    parser.add_argument(
        "--quick", action="store_true", help="2 + 2 + 1 epochs: a smoke run, not a result"
    )
    args = parser.parse_args(argv)
    rounds = 5
    if args.quick:
        args.epochs, args.prune_epochs, args.qat_epochs, rounds = 2, 2, 1, 1
    results = run(
        epochs=args.epochs,
        prune_epochs=args.prune_epochs,
        qat_epochs=args.qat_epochs,
        target_sparsity=args.sparsity,
        output_dir=args.output_dir,
        latency_rounds=rounds,
    )
    print(results["summary"])
    print()
    print(format_table(results))
    return results


if __name__ == "__main__":
    main()
