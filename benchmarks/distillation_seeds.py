"""What distillation recovers in the demo, over several seeds.

One demo run cannot decide a 1-point question on the digits: the test set
has 359 images (one is 0.28 points), and the same recipe moves a
technique's accuracy against its float model by 1-3 points from one seed
to the next. This trains the demo's float model and the chosen variants of
`tfmot_lite.demo.VARIANTS` (each with its distilled twin, the demo's
epochs and learning rates) once per seed, and prints, per variant, the
Keras test accuracy minus the float model's: mean, min..max and each
seed's value. Keras accuracy, not the exported .tflite's: the demo's table
shows the two agree to within an image or two for these models (agreement
0.99-1.00); run the demo itself for the exported figures.

    python benchmarks/distillation_seeds.py --seeds 0,1,2,3
    python benchmarks/distillation_seeds.py --variants "clustered 16" --seeds 0,1
    python benchmarks/distillation_seeds.py --variants "pruned 75%" --pruning-rate 1e-3

`--pruning-rate R` fine-tunes the pruned models at the constant rate R
instead of the demo's `pruning_learning_rate` (the recipe before it: 1e-3).
"""

import argparse
import statistics
import time

from tfmot_lite import demo
from tfmot_lite.distillation import student_of

import keras  # noqa: E402  (after tfmot_lite.demo: TensorFlow's banner silenced)

DEFAULT_VARIANTS = "pruned 75%,PQAT int8,clustered 16"
# PQAT fine-tunes the pruned model (its distilled twin, the distilled one).
NEEDS = {"PQAT int8": "pruned 75%"}


def accuracy(model, splits):
    predictions = student_of(model).predict(splits.x_test, batch_size=256, verbose=0)
    return float((predictions.argmax(-1) == splits.y_test).mean())


def run_seed(seed, names, epochs, pruning_rate=None):
    """`{variant: test accuracy}` of one seed, the float model's under 'float'."""
    keras.utils.set_random_seed(seed)
    splits = demo.load_splits("digits")
    ctx = demo.Context(splits, dict(epochs), pruning_rate=pruning_rate)
    baseline = ctx.fit(demo.build_xnnpack_cnn(), "float", epochs["base"],
                       demo.float_learning_rate(ctx))
    result = {"float": accuracy(baseline, splits)}
    by_name = {v.name: v for v in demo.VARIANTS}
    for name in names:
        for variant in (by_name[name], by_name[name + demo.DISTILLED]):
            ctx.models[variant.name] = variant.build(baseline, ctx)
            result[variant.name] = accuracy(ctx.models[variant.name], splits)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3")
    parser.add_argument("--variants", default=DEFAULT_VARIANTS,
                        help="comma-separated names from tfmot_lite.demo.VARIANTS")
    parser.add_argument("--pruning-rate", type=float, default=None, metavar="R",
                        help="a constant learning rate for the pruning fine-tune")
    args = parser.parse_args()
    if args.pruning_rate is not None:
        if not args.pruning_rate > 0:
            parser.error(f"--pruning-rate must be > 0; received {args.pruning_rate}")
    known = [v.name for v in demo.VARIANTS if not v.name.endswith(demo.DISTILLED)]
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    for name in names:
        if name not in known or name in ("float", "int8 PTQ"):
            parser.error(f"--variants: unknown or untrained variant {name!r}; "
                         f"choose from {', '.join(known[2:])}")
    for name in list(names):
        if NEEDS.get(name) and NEEDS[name] not in names:
            names.insert(names.index(name), NEEDS[name])
    seeds = [int(s) for s in args.seeds.split(",")]
    epochs = demo.FULL_EPOCHS

    results = []
    for seed in seeds:
        start = time.perf_counter()
        results.append(run_seed(seed, names, epochs, args.pruning_rate))
        print(f"seed {seed}: " + ", ".join(f"{k} {v:.4f}" for k, v in results[-1].items())
              + f" ({time.perf_counter() - start:.0f} s)", flush=True)

    floats = [r["float"] for r in results]
    print(f"\nfloat model: mean {statistics.mean(floats):.4f} "
          f"[{min(floats):.4f}-{max(floats):.4f}] over seeds {args.seeds}")
    print("Keras test accuracy minus the float model's, in points:\n")
    print("| variant | mean | min..max | per seed |")
    print("|---|---:|---:|---|")
    for name in results[0]:
        if name == "float":
            continue
        diffs = [100 * (r[name] - r["float"]) for r in results]
        print(f"| {name} | {statistics.mean(diffs):+.2f} | {min(diffs):+.1f}..{max(diffs):+.1f} | "
              + " ".join(f"{d:+.1f}" for d in diffs) + " |")


if __name__ == "__main__":
    main()
