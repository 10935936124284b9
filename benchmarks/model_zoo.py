"""Model zoo: every `keras.applications` model through every technique, end
to end, the .tflite checked against the Keras model it came from.

For each model (`weights=None`, 10 classes, logits), trained briefly on the
bundled digits upsampled to `--size` x `--size` x 3 (models that rescale
their input themselves, MobileNetV3, EfficientNet, ConvNeXt, get pixel
values 0..255, the others 0..1), and each technique:

* `float`: the trained model as float32 (the reference for size/latency);
* `ptq`: post-training full-integer quantization (`export_model` "int8",
  calibrated on training images);
* `qat`: `quantize_model` + a short fit, exported int8;
* `prune`: `prune_low_magnitude` to 50% (ConstantSparsity) + a short fit,
  exported float32 (stored sparse where LiteRT computes the same);
* `cluster`: `cluster_weights`, 16 clusters (k-means++) + a short fit,
  exported float32;
* `pqat`: prune 50%, strip, then `quantize_apply` with
  `experimental.combine.Default8BitPrunePreserveQuantizeScheme` + a short
  fit, exported int8.

The integer exports have an int8 interface (`int8_io=True`), so the share of
integer operators is 1.0 when nothing runs in float. Per model and technique
it records whether the model wrapped, trained and exported (or the first
line of the error and the stage), the report's `int8_fraction` and the
operators that touch float, top-1 agreement and logit cosine of LiteRT
with the Keras model the .tflite came from (and, for the integer exports,
of LiteRT's built-in kernels with XNNPACK on the same file: the spread
between two correct runtimes, `kernel_spread`), accuracy in Keras and LiteRT,
bytes, zeros and distinct values per channel as stored, the wall time of
wrapping, the median training step and the export (conversion and the
report's measurements), and for the QAT techniques the first layer where
the .tflite departs from the Keras model (`export.layer_fidelity`).

LiteRT latency (XNNPACK, `--threads`): after a model's techniques are done,
each of its .tflite files is timed in `--rounds` interleaved rounds (the
order shuffled each round) of `--runs` single-example runs; the table gives
the median of the round medians and their spread (min-max).

Results are cached per model, size and technique in
`<output>/results.json` (one run resumes where the last stopped; `--force`
redoes), the trained float baseline in `<output>/<model>@<size>/`. The
table is written to `--markdown` and a plot to `--plot` (by default
`<output>/model_zoo.md` and `.png`), covering every cached result of
`--size`; the published pages are rewritten only when named
(`--markdown docs/model_zoo.md --plot docs/model_zoo.png`), so a run of one
model does not replace them with a page of that model.

    python benchmarks/model_zoo.py --models MobileNetV3Small,EfficientNetB0 --size 64
    python benchmarks/model_zoo.py --techniques qat,ptq --epochs 1 --steps 4
    python benchmarks/model_zoo.py --list

tensorflow-model-optimization side by side: where `tf_keras` and
`tensorflow_model_optimization` import, tfmot's `quantize_model` is tried
on the same architectures in a subprocess (does it wrap, and convert to how
many bytes); otherwise the page says it was skipped.
"""

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import textwrap
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tfmot_lite as tfmot  # noqa: E402  (first: TensorFlow's banner silenced)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfmot_lite import data as datasets  # noqa: E402
from tfmot_lite import export  # noqa: E402
from tfmot_lite.export.delegation import Delegation  # noqa: E402
from tfmot_lite.export.runtime import TFLiteModel  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if HERE not in sys.path:  # benchmarks/stats.py, also when imported from a file path
    sys.path.insert(0, HERE)
from stats import mcnemar_exact  # noqa: E402
TECHNIQUES = ("float", "ptq", "qat", "prune", "cluster", "pqat")
INTEGER = {"ptq", "qat", "pqat"}
QAT = {"qat", "pqat"}
# Constructors that take `include_preprocessing` (or always rescale 0..255).
_PIXELS_0_255 = ("MobileNetV3", "EfficientNet", "ConvNeXt")


def all_models():
    """Every model constructor `keras.applications` exports, by name."""
    return sorted(name for name, obj in vars(keras.applications).items()
                  if callable(obj) and name[:1].isupper())


def build(name, size):
    ctor = getattr(keras.applications, name)
    return ctor(input_shape=(size, size, 3), weights=None, classes=10,
                classifier_activation=None)


def pixel_scale(name):
    return 255.0 if name.startswith(_PIXELS_0_255) else 1.0


_DATA = {}


def digits(size, scale):
    key = (size, scale)
    if key not in _DATA:
        (x, y), (xt, yt) = datasets.digits(image_size=size)
        _DATA[key] = (x * scale, y), (xt * scale, yt)
    return _DATA[key]


_EAGER = {"on": False}


def _compile(model, lr):
    model.compile(optimizer=keras.optimizers.Adam(lr),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=False, run_eagerly=_EAGER["on"])
    return model


class _StepTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times = []

    def on_train_batch_begin(self, batch, logs=None):
        self._start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self._start)

    def median_ms(self):
        """Median step time without the first (tracing) step, when there
        are others."""
        times = self.times[1:] or self.times
        return 1000 * statistics.median(times) if times else None


def _fit(model, x, y, steps, batch_size, lr, callbacks=()):
    """`steps` training steps (at least one); returns (seconds, median step ms)."""
    _compile(model, lr)
    timer = _StepTimer()
    n = min(len(x), max(1, steps) * batch_size)
    start = time.perf_counter()
    model.fit(x[:n], y[:n], batch_size=batch_size, epochs=1, verbose=0,
              callbacks=[timer, *callbacks])
    return time.perf_counter() - start, timer.median_ms()


def _first_line(error):
    """The error's first line; for Keras's "Exception encountered when
    calling X.call()" wrapper, with the innermost message that says why."""
    import re

    text = re.sub(r"\x1b\[[0-9;]*m", "", f"{type(error).__name__}: {error}").strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0]
    if "Exception encountered when calling" in first:
        causes = [line for line in lines[1:] if not line.startswith((
            "Exception encountered", "Arguments received", "•", "Could not automatically",
            "Either the", "Error encountered"))]
        if causes:
            first = f"{first} {causes[0]}"
    return first[:300]


def _logit_cosine(a, b):
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    cos = np.where(norms > 0, np.sum(a * b, axis=1) / np.maximum(norms, 1e-30), 1.0)
    return float(np.mean(cos))


# BatchNormalization momentum while the float model trains. Keras' 0.99
# leaves the moving statistics 0.99^48 = 62% at their initial values after
# the 48 steps of a 3-epoch run on 512 images, so the model in inference
# mode predicts chance whatever it learned (measured: 0.09-0.19 test accuracy
# on EfficientNetB0, MobileNet, MobileNetV3Small, ResNet50V2) and comparing
# its .tflite with it says nothing. At 0.9 the statistics follow the last
# few dozen batches, and `recalibrate_batch_norms` then sets them from the
# final weights (the MobileNets still lagged behind at 0.9). The models keep
# their own momentum afterwards.
BASELINE_BN_MOMENTUM = 0.9


def _batch_norms(model):
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization)]


def recalibrate_batch_norms(model, x, batch_size=32):
    """Sets every BatchNormalization's moving statistics to the mean of its
    batch statistics over `x` under the final weights ("precise BatchNorm",
    Wu and Johnson 2021, "Rethinking 'Batch' in BatchNorm"): each batch runs
    in training mode with momentum `(k - 1) / k` at its `k`-th batch, so the
    moving mean and variance end as the plain average over the batches.

    A brief training run moves the weights faster than moving averages
    follow, even at momentum 0.9: MobileNetV2 and MobileNetV3Small trained
    3 epochs on 512 digits (96x96) predicted one class in inference (0.10
    test accuracy) and 0.84 and 0.89 in training mode; recalibrated, 0.84
    and 0.91 in inference."""
    norms = _batch_norms(model)
    momenta = [layer.momentum for layer in norms]
    try:
        for k, start in enumerate(range(0, len(x), batch_size), start=1):
            for layer in norms:
                layer.momentum = (k - 1) / k
            model(x[start:start + batch_size], training=True)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum


# Adam learning rates of the float baseline. A model without BatchNorm
# does not train at the first of them: VGG16 (96x96, 10 epochs on 1438 digits) predicted
# one class for every image (0.078 test accuracy); at 1e-4 it reached 0.87
# after one epoch.
FLOAT_LEARNING_RATE = 1e-3
FLOAT_LEARNING_RATE_WITHOUT_BATCH_NORM = 1e-4


def float_learning_rate(model):
    """The baseline's Adam rate: `FLOAT_LEARNING_RATE`, or the smaller
    `FLOAT_LEARNING_RATE_WITHOUT_BATCH_NORM` for a model with no
    BatchNormalization (VGG16, VGG19)."""
    return FLOAT_LEARNING_RATE if _batch_norms(model) else FLOAT_LEARNING_RATE_WITHOUT_BATCH_NORM


def baseline_weights_name(epochs, lr):
    """The cached weights' file name; the default rate keeps the name
    weights trained before the rate was chosen per model were saved under."""
    rate = "" if lr == FLOAT_LEARNING_RATE else f"_lr{lr:g}"
    return f"float_e{epochs}_bn{BASELINE_BN_MOMENTUM}{rate}_recalibrated.weights.h5"


def baseline(name, size, epochs, x, y, directory, log, batch_size=32):
    """The trained float model (its weights cached in `directory`)."""
    keras.utils.set_random_seed(0)
    model = build(name, size)
    lr = float_learning_rate(model)
    path = os.path.join(directory, baseline_weights_name(epochs, lr))
    if os.path.exists(path):
        model.load_weights(path)
        log(f"[{name}] float baseline: loaded {os.path.relpath(path)}")
        return model, None
    _compile(model, lr)
    start = time.perf_counter()
    norms = _batch_norms(model)
    momenta = [layer.momentum for layer in norms]
    for layer in norms:
        layer.momentum = min(layer.momentum, BASELINE_BN_MOMENTUM)
    try:
        if epochs:
            model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0)
    finally:
        for layer, momentum in zip(norms, momenta):
            layer.momentum = momentum
    if epochs:
        recalibrate_batch_norms(model, x, batch_size)
    seconds = time.perf_counter() - start
    os.makedirs(directory, exist_ok=True)
    model.save_weights(path)
    log(f"[{name}] float baseline: {epochs} epoch(s) on {len(x)} images at Adam {lr:g} "
        f"in {seconds:.0f}s")
    return model, seconds


# Adam learning rates of the fine-tuning steps. A trained model fine-tunes
# at a small rate: at 1e-4, 16 QAT steps cost DenseNet121 (3 epochs, 96x96)
# 4 points of Keras accuracy (0.953 vs 0.984 with no step at all, 0.992 at
# 1e-5). Pruning to 50% in one step needs the larger rate to recover.
LEARNING_RATES = {"qat": 1e-5, "prune": 1e-4, "cluster": 1e-5}
# The QAT rate (QAT, and PQAT's QAT steps) of results cached before it was
# recorded.
_EARLIER_QAT_RATE = 1e-4


def _rates_text(results):
    """The fine-tuning rates the page's results were measured with."""
    qat = sorted({r.get("qat_learning_rate", _EARLIER_QAT_RATE) for r in results
                  if r.get("technique") in ("qat", "pqat")})
    qat_text = " or ".join(f"{rate:g}" for rate in qat) or f"{LEARNING_RATES['qat']:g}"
    return (f"{qat_text} for QAT, {LEARNING_RATES['prune']:g} for pruning "
            f"(PQAT's pruning too), {LEARNING_RATES['cluster']:g} for clustering")


def variant(technique, model, x, y, steps, batch_size):
    """`(keras model to export, mode, timings)` for one technique; timings
    holds wrap_s, train_s, step_ms. Raises with `.stage` set on failure."""
    q = tfmot.quantization.keras
    sk = tfmot.sparsity.keras
    ck = tfmot.clustering.keras
    timings = {"wrap_s": 0.0, "train_s": 0.0, "step_ms": None}
    stage = "wrap"

    def timed_wrap(fn, *args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        timings["wrap_s"] += time.perf_counter() - start
        return out

    def train(wrapped, lr, callbacks=()):
        seconds, step_ms = _fit(wrapped, x, y, steps, batch_size, lr, callbacks)
        timings["train_s"] += seconds
        timings["step_ms"] = step_ms if timings["step_ms"] is None else (
            timings["step_ms"] + step_ms) / 2

    try:
        if technique == "float":
            return model, "float32", timings
        if technique == "ptq":
            return model, "int8", timings
        if technique == "qat":
            wrapped = timed_wrap(q.quantize_model, model)
            stage = "train"
            train(wrapped, LEARNING_RATES["qat"])
            return wrapped, "int8", timings
        if technique == "prune":
            wrapped = timed_wrap(sk.prune_low_magnitude, model,
                                 pruning_schedule=sk.ConstantSparsity(0.5, 0, frequency=1))
            stage = "train"
            train(wrapped, LEARNING_RATES["prune"], [sk.UpdatePruningStep()])
            return wrapped, "float32", timings
        if technique == "cluster":
            wrapped = timed_wrap(
                ck.cluster_weights, model, number_of_clusters=16,
                cluster_centroids_init=ck.CentroidInitialization.KMEANS_PLUS_PLUS)
            stage = "train"
            train(wrapped, LEARNING_RATES["cluster"])
            return wrapped, "float32", timings
        if technique == "pqat":
            pruned = timed_wrap(sk.prune_low_magnitude, model,
                                pruning_schedule=sk.ConstantSparsity(0.5, 0, frequency=1))
            stage = "train"
            train(pruned, LEARNING_RATES["prune"], [sk.UpdatePruningStep()])
            stage = "wrap"
            stripped = timed_wrap(sk.strip_pruning, pruned)
            annotated = timed_wrap(q.quantize_annotate_model, stripped)
            wrapped = timed_wrap(
                q.quantize_apply, annotated,
                tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme())
            stage = "train"
            train(wrapped, LEARNING_RATES["qat"])
            return wrapped, "int8", timings
    except Exception as error:
        error.stage = stage
        raise
    raise ValueError(f"unknown technique {technique!r}; choose from {', '.join(TECHNIQUES)}")


def run_technique(name, technique, model, train_data, test_data, path, args, log):
    """One result dict (see the module docstring)."""
    (x, y), (xt, yt) = train_data, test_data
    result = {
        "model": name, "technique": technique, "size": args.size, "epochs": args.epochs,
        "steps": args.steps, "status": "ok", "wrapped": False, "trained": False,
        "exported": False, "path": os.path.relpath(path, ROOT),
        **({"qat_learning_rate": LEARNING_RATES["qat"]} if technique in ("qat", "pqat") else {}),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
    }
    stage = "wrap"
    try:
        keras.utils.set_random_seed(0)
        wrapped, mode, timings = variant(technique, model, x, y, args.steps, args.batch_size)
        result.update(timings, wrapped=True, trained=True)
        stage = "export"
        start = time.perf_counter()
        # Agreement and accuracy are measured below, with the logits (one
        # Keras and one LiteRT pass over the test images, not two).
        report = export.export_model(
            wrapped, mode, path=path,
            representative_data=x[:args.calibration] if technique == "ptq" else None,
            int8_io=mode == "int8", threads=args.threads, latency_runs=args.runs,
            name=f"{name} {technique}", sparse=None if args.sparse == "auto" else False,
        )
        result["export_s"] = time.perf_counter() - start
        result["exported"] = True
        stage = "run"
        flatbuffer = open(path, "rb").read()
        runner = TFLiteModel(flatbuffer, num_threads=args.threads)
        lite = runner.predict(xt)
        if mode != "float32":
            result.update(kernel_spread(flatbuffer, xt, lite, args.threads))
        reference = np.asarray(wrapped(xt, training=False) if _EAGER["on"] else
                               wrapped.predict(xt, verbose=0, batch_size=args.batch_size))
        result.update(
            mode=mode,
            int8_fraction=report.int8_fraction,
            float_ops=sorted(set(export.float_operators(flatbuffer))),
            agreement=float(np.mean(lite.argmax(-1) == reference.argmax(-1))),
            disagreements_on_ties=_disagreements_on_ties(reference, lite),
            logit_cosine=_logit_cosine(reference, lite),
            accuracy=float(np.mean(lite.argmax(-1) == yt)),
            test_correct=_correct(lite, yt),
            keras_accuracy=float(np.mean(reference.argmax(-1) == yt)),
            examples=int(len(xt)),
            bytes=report.bytes,
            gzip_bytes=report.gzip_bytes,
            sparsity=report.sparsity,
            max_unique_per_channel=report.max_unique_per_channel,
            sparse_storage=report.sparse_storage,
            latency_us=report.latency_us,
            latency_spread_us=None,
            xnnpack=report.xnnpack,
            operators=len(report.operators),
        )
        if technique in QAT or (args.fidelity_all and mode != "float32"):
            stage = "fidelity"
            try:
                fidelity = export.layer_fidelity(wrapped, flatbuffer, xt,
                                                 examples=args.fidelity_examples)
            except Exception as error:
                result["fidelity_error"] = _first_line(error)
                fidelity = None
        else:
            fidelity = None
        if fidelity is not None:
            first, worst = fidelity.first_departure, fidelity.worst
            result["fidelity"] = {
                "summary": fidelity.summary(),
                "examples": fidelity.examples,
                "compared": len(fidelity.compared),
                "layers": len(fidelity.rows),
                "first_departure": None if first is None else first.to_dict(),
                "first_local_departure": _row_dict(fidelity.first_local_departure),
                "worst": None if worst is None else worst.to_dict(),
                "output": None if fidelity.output is None else fidelity.output.to_dict(),
                "min_cosine": fidelity.min_cosine,
                "max_error": fidelity.max_error,
                "max_lsb": fidelity.max_lsb,
                "max_local_share": fidelity.max_local_share,
                # The rows up to and just after the first departure.
                "rows": _rows_around(fidelity),
                "all_rows": [r.to_dict() for r in fidelity.rows],
            }
    except Exception as error:
        stage = getattr(error, "stage", stage)
        result["status"] = f"fails at {stage}: {_first_line(error)}"
        result["traceback"] = traceback.format_exc(limit=6)[-3000:]
    return result


def _disagreements_on_ties(reference, lite):
    """How many of the images the .tflite's top-1 differs on are ties in
    the Keras model's logits: a QAT model's output is fake-quantized, so
    two classes can sit on the same integer, and the Keras top-1 is then
    the first of them, a coin the device's integers may flip."""
    top2 = np.sort(reference, axis=-1)[:, -2:]
    tied = top2[:, 0] == top2[:, 1]
    return int(np.sum(tied & (lite.argmax(-1) != reference.argmax(-1))))


def _agreement(r):
    """The agreement cell: top-1 agreement, and how many of the images it
    misses are ties in the Keras logits (`_disagreements_on_ties`)."""
    text = _fmt(r["agreement"], ".3f")
    if r.get("disagreements_on_ties"):
        text += f" ({r['disagreements_on_ties']} on ties)"
    return text


def kernel_spread(flatbuffer, x, xnnpack_logits=None, threads=1):
    """How far two correct runtimes disagree on one integer .tflite: top-1
    agreement and logit cosine of LiteRT's built-in kernels with XNNPACK's
    on `x`. Both compute the same integer graph and differ only in how they
    round (the last bit of a requantization, a mean); where this model turns
    such differences into other predictions, no simulation short of a
    bit-exact one agrees with the .tflite more closely than this."""
    if xnnpack_logits is None:
        xnnpack_logits = TFLiteModel(flatbuffer, num_threads=threads).predict(x)
    builtin = TFLiteModel(flatbuffer, num_threads=threads, xnnpack=False).predict(x)
    return {
        "kernels_agreement": float(np.mean(builtin.argmax(-1) == xnnpack_logits.argmax(-1))),
        "kernels_cosine": _logit_cosine(xnnpack_logits, builtin),
    }


def _correct(logits, labels):
    """Which test images the .tflite classifies right, `[0, 1, ...]`: what
    `paired_accuracy` compares image by image."""
    return (np.asarray(logits).argmax(-1) == np.asarray(labels)).astype(int).tolist()


def _cached_flatbuffer(result, missing_field):
    """The .tflite bytes of a cached, successful result that lacks
    `missing_field` and whose file is still there; else None."""
    path = os.path.join(ROOT, result.get("path", ""))
    if result.get("status") != "ok" or missing_field in result or not os.path.exists(path):
        return None
    with open(path, "rb") as f:
        return f.read()


def _add_test_correct(result, x, labels, threads, log):
    """Records `test_correct` for a cached result that lacks it (its .tflite
    run again on the test images)."""
    flatbuffer = _cached_flatbuffer(result, "test_correct")
    if flatbuffer is None:
        return False
    result["test_correct"] = _correct(
        TFLiteModel(flatbuffer, num_threads=threads).predict(x), labels)
    log(f"[{result['model']}] {result['technique']}: per-image results recorded")
    return True


def _add_kernel_spread(result, x, threads, log):
    """Measures `kernel_spread` for a cached integer result that lacks it."""
    if result.get("technique") not in INTEGER:
        return False
    flatbuffer = _cached_flatbuffer(result, "kernels_agreement")
    if flatbuffer is None:
        return False
    result.update(kernel_spread(flatbuffer, x, threads=threads))
    log(f"[{result['model']}] {result['technique']}: XNNPACK vs built-in kernels "
        f"agreement {result['kernels_agreement']:.3f}, cos {result['kernels_cosine']:.4f}")
    return True


def _row_dict(row):
    return None if row is None else row.to_dict()


def _rows_around(fidelity, before=3, after=2):
    compared = fidelity.compared
    first = fidelity.first_departure
    if first is None:
        return []
    k = compared.index(first)
    return [r.to_dict() for r in compared[max(0, k - before):k + after + 1]]


def interleaved_latency(results, args, sample, log):
    """Median of `rounds` round medians (shuffled order each round) for the
    .tflite of every result that has one; min-max of the round medians."""
    paths = {r["technique"]: os.path.join(ROOT, r["path"]) for r in results
             if r.get("exported") and os.path.exists(os.path.join(ROOT, r["path"]))}
    if not paths or args.rounds < 1:
        return
    times = {t: [] for t in paths}
    rng = random.Random(0)
    for _ in range(args.rounds):
        order = list(paths)
        rng.shuffle(order)
        for technique in order:
            times[technique].append(export.measure_latency(
                paths[technique], sample, runs=args.runs, warmup=min(10, args.runs),
                num_threads=args.threads))
    for r in results:
        if r["technique"] in times:
            values = times[r["technique"]]
            r["latency_us"] = statistics.median(values)
            r["latency_spread_us"] = [min(values), max(values)]
            r["latency_rounds"] = args.rounds
            r["latency_runs"] = args.runs
            # What the file measured runs in XNNPACK (rows stored before the
            # column existed get it here).
            r["xnnpack"] = dataclasses.asdict(TFLiteModel(
                paths[r["technique"]], num_threads=args.threads).xnnpack_delegation())
    log(f"[{results[0]['model']}] latency: {args.rounds} interleaved round(s) over "
        f"{len(paths)} file(s)")


def run_model(name, techniques=TECHNIQUES, args=None, cache=None, log=print, **overrides):
    """Every technique on one model; returns {technique: result}. `cache`
    (a dict, updated in place and saved after each technique when
    `args.results` is set) holds results already measured, which are kept."""
    args = args if args is not None else parse_args([])
    for key, value in overrides.items():
        setattr(args, key, value)
    cache = {} if cache is None else cache
    _EAGER["on"] = bool(args.eager)
    scale = pixel_scale(name)
    (x, y), (xt, yt) = digits(args.size, scale)
    x, y = x[:args.train_examples], y[:args.train_examples]
    xt, yt = xt[:args.test_examples], yt[:args.test_examples]
    directory = os.path.join(args.output, f"{name}@{args.size}")
    os.makedirs(directory, exist_ok=True)
    todo = [t for t in techniques if args.force or _key(name, args.size, t) not in cache]
    results = {t: cache[_key(name, args.size, t)] for t in techniques if t not in todo}
    for t in results:
        log(f"[{name}] {t}: cached ({results[t]['status']})")
        spread = _add_kernel_spread(results[t], xt, args.threads, log)
        if _add_test_correct(results[t], xt, yt, args.threads, log) or spread:
            _store(cache, results[t], args)
    if todo:
        try:
            model, _ = baseline(name, args.size, args.epochs, x, y, directory, log,
                                args.batch_size)
        except Exception as error:
            for t in todo:
                results[t] = {"model": name, "technique": t, "size": args.size,
                              "epochs": args.epochs, "steps": args.steps,
                              "status": f"fails at build: {_first_line(error)}",
                              "wrapped": False, "trained": False, "exported": False}
                log(f"[{name}] {t}: {results[t]['status']}")
                _store(cache, results[t], args)
            return results
        for t in todo:
            log(f"[{name}] {t}: ...")
            path = os.path.join(directory, f"{t}.tflite")
            result = run_technique(name, t, model, (x, y), (xt, yt), path, args, log)
            results[t] = result
            log(f"[{name}] {t}: {_progress(result)}")
            _store(cache, result, args)
    ordered = [results[t] for t in techniques]
    interleaved_latency(ordered, args, xt[0], log)
    for r in ordered:
        _store(cache, r, args)
    return results


def _key(name, size, technique):
    return f"{name}@{size}/{technique}"


def _store(cache, result, args):
    """Records `result` in `cache` and in the results file. The file is
    re-read under a lock and only this key replaced, so runs of other
    models in other processes (`--models A` beside `--models B`) keep
    theirs."""
    key = _key(result["model"], result["size"], result["technique"])
    cache[key] = result
    if getattr(args, "results", None):
        from tfmot_lite.atomic_file import write_text_atomic

        with _locked(args.results + ".lock"):
            on_disk = load_cache(args.results)
            on_disk[key] = result
            write_text_atomic(args.results, json.dumps(on_disk, indent=1, sort_keys=True))


@contextlib.contextmanager
def _locked(path):
    """An exclusive advisory lock on `path` (POSIX; elsewhere no lock)."""
    try:
        import fcntl
    except ImportError:  # Windows: one run at a time
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def load_cache(path):
    if path and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    return {}


def _progress(r):
    if r["status"] != "ok":
        return r["status"]
    parts = [f"wrap {r['wrap_s']:.1f}s"]
    if r.get("step_ms"):
        parts.append(f"step {r['step_ms']:.0f} ms")
    parts += [f"export {r['export_s']:.1f}s", f"int8 ops {r['int8_fraction']:.0%}",
              f"agreement {_agreement(r)}", f"logit cos {r['logit_cosine']:.4f}",
              f"{r['bytes'] / 1024:,.0f} KiB"]
    if "kernels_agreement" in r:
        parts.append(f"XNNPACK vs built-in kernels {r['kernels_agreement']:.3f} / "
                     f"{r['kernels_cosine']:.4f}")
    if r.get("fidelity"):
        parts.append(r["fidelity"]["summary"])
    return ", ".join(parts)


# -- presentation -------------------------------------------------------------

def _fmt(value, spec, missing="-"):
    return missing if value is None else format(value, spec)


def _refresh_fidelity(r):
    """Recomputes a cached result's verdict from its rows with the current
    `FidelityReport` rules (the rows are what was measured)."""
    f = r.get("fidelity")
    if not f or "all_rows" not in f:
        return
    report = export.FidelityReport.from_dict({
        "rows": f["all_rows"], "examples": f["examples"], "min_cosine": f["min_cosine"],
        "max_error": f["max_error"], "max_lsb": f["max_lsb"],
        "max_local_share": f.get("max_local_share", 0.02)})
    first, worst = report.first_departure, report.worst
    f["summary"] = report.summary()
    f["first_departure"] = None if first is None else first.to_dict()
    f["first_local_departure"] = _row_dict(report.first_local_departure)
    f["local_compared"] = sum(r.local_share is not None for r in report.rows)
    f["worst_local"] = _row_dict(max(
        (r for r in report.rows if r.local_share is not None),
        key=lambda r: r.local_share, default=None))
    f["worst"] = None if worst is None else worst.to_dict()
    f["rows"] = _rows_around(report)


def _departure(r):
    f = r.get("fidelity")
    if r.get("fidelity_error"):
        return "comparison fails: " + r["fidelity_error"]
    if not f:
        return "-"
    first = f["first_departure"]
    if first is None:
        return f"none ({f['compared']}/{f['layers']} compared)"
    lsb = "" if first.get("lsb") is None else f", {first['lsb']:.0f} LSB"
    return (f"{first['path']} ({first['layer_type']}): cos {first['cosine']:.3f}, "
            f"err {first['max_error']:.0%}{lsb}")


def _local(r):
    """The first layer that computes differently on its own .tflite inputs,
    else the most-off layer's share."""
    f = r.get("fidelity")
    if not f or not f.get("local_compared"):
        return "-"
    first = f.get("first_local_departure")
    if first is not None:
        return (f"{first['path']} ({first['layer_type']}): {first['local_share']:.1%} "
                f"off, max {first['local_lsb']:.0f} LSB")
    worst = f["worst_local"]
    return f"none (worst {worst['local_share']:.1%} at {worst['path']})"


def _xnnpack_cell(r):
    """The share of operators XNNPACK runs; when not all, the partitions and
    the operators left to LiteRT's built-in kernels (the three most common)."""
    if not r.get("xnnpack"):
        return "-"
    x = Delegation(**r["xnnpack"])
    share = f"{x.share:.0%}"
    if x.complete:
        return share
    parts = "partition" if x.partitions == 1 else "partitions"
    return f"{share} ({x.partitions} {parts}; built-in: {x.outside_text(limit=3)})"


def table_rows(results, tfmot=None):
    header = ["model", "technique", "wrap/train/export", "int8 ops", "agreement",
              "logit cos", "XNNPACK vs built-in",
              "acc Keras / LiteRT", "KiB", "latency ms [min-max]", "XNNPACK ops",
              "wrap s", "step ms", "export s", "zeros", "uniq/ch", "first departing layer",
              "computes differently (own inputs)"]
    if tfmot:
        header.append("tfmot QAT (untrained)")
    rows = [header]
    for r in results:
        if r["status"] != "ok":
            rows.append([r["model"], r["technique"], r["status"]] + ["-"] * (len(header) - 3))
            if tfmot:
                rows[-1][-1] = _tfmot_cell(r, tfmot)
            continue
        spread = r.get("latency_spread_us")
        latency = f"{r['latency_us'] / 1000:.2f}" + (
            f" [{spread[0] / 1000:.2f}-{spread[1] / 1000:.2f}]" if spread else "")
        int8 = f"{r['int8_fraction']:.0%}"
        if r["technique"] in INTEGER and r["int8_fraction"] < 1.0:
            int8 += " (float: " + ", ".join(r["float_ops"]) + ")"
        rows.append([
            r["model"], r["technique"], "ok", int8,
            _agreement(r), _fmt(r["logit_cosine"], ".4f"),
            "-" if "kernels_agreement" not in r else
            f"{r['kernels_agreement']:.3f} / {r['kernels_cosine']:.4f}",
            f"{_fmt(r['keras_accuracy'], '.3f')} / {_fmt(r['accuracy'], '.3f')}",
            f"{r['bytes'] / 1024:,.0f}", latency, _xnnpack_cell(r), f"{r['wrap_s']:.1f}",
            _fmt(r.get("step_ms"), ".0f"), f"{r['export_s']:.1f}",
            f"{r['sparsity']:.0%}", _fmt(r["max_unique_per_channel"], "d"), _departure(r),
            _local(r),
        ] + ([_tfmot_cell(r, tfmot)] if tfmot else []))
    return rows


def paired_accuracy(results, first="qat", second="ptq"):
    """Per model, `first`'s .tflite against `second`'s on the same test
    images: `(model, acc first, acc second, only first right, only second
    right, McNemar p)` for the models where both recorded `test_correct`.
    With a few hundred images one image is 0.3 points of accuracy; p says
    whether a difference is more than which images fell on which side."""
    by_key = {(r["model"], r["technique"]): r for r in results}
    rows = []
    for model in sorted({r["model"] for r in results}):
        a, b = by_key.get((model, first)), by_key.get((model, second))
        if not (a and b and a.get("test_correct") and b.get("test_correct")):
            continue
        x, y = np.asarray(a["test_correct"]), np.asarray(b["test_correct"])
        if x.shape != y.shape:
            continue
        only_a, only_b = int(np.sum(x > y)), int(np.sum(y > x))
        rows.append((model, float(x.mean()), float(y.mean()), only_a, only_b,
                     mcnemar_exact(only_a, only_b)))
    return rows


def _paired_section(results):
    rows = paired_accuracy(results)
    if not rows:
        return []
    lines = [
        "", "## QAT against PTQ, image by image", "",
        "Each integer .tflite on the same test images (LiteRT, XNNPACK): the images "
        "only the QAT model classifies right, those only the PTQ model does, and the "
        "two-sided exact McNemar p-value of \"equally accurate\" (`stats.mcnemar_exact`). "
        "A small p says the accuracies differ by more than which images happened to "
        "fall on which side.", "",
        "| model | QAT acc | PTQ acc | only QAT right | only PTQ right | McNemar p |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [f"| {m} | {qa:.3f} | {pa:.3f} | {oq} | {op} | {p:.2f} |"
              for m, qa, pa, oq, op, p in rows]
    return lines


def to_markdown(results, args, tfmot_note, tfmot=None):
    for r in results:
        _refresh_fidelity(r)
    rows = table_rows(results, tfmot)
    models = sorted({r["model"] for r in results})
    missing = [m for m in all_models() if m not in models]
    r0 = results[0] if results else {}
    lines = [
        f"# {args.title}",
        "",
        "Generated by `benchmarks/model_zoo.py` "
        f"(`python benchmarks/model_zoo.py --models {','.join(models)} "
        f"--techniques {','.join(t for t in TECHNIQUES if any(r['technique'] == t for r in results))} "
        f"--size {args.size} --epochs {r0.get('epochs', args.epochs)} "
        f"--train-examples {args.train_examples} --test-examples {args.test_examples} "
        f"--steps {r0.get('steps', args.steps)}{_page_flags(args)}`).",
        "",
        f"**Covers {len(models)} of the {len(all_models())} `keras.applications` models** "
        f"({', '.join(models)}) at **{args.size}x{args.size}x3**, `weights=None`, 10 "
        f"classes, trained {r0.get('epochs', args.epochs)} epoch(s) on "
        f"{args.train_examples} digits images (scikit-learn's bundled 8x8 digits, "
        f"upsampled; Adam at {FLOAT_LEARNING_RATE:g}, {FLOAT_LEARNING_RATE_WITHOUT_BATCH_NORM:g} "
        f"for a model without BatchNorm); each technique then fine-tunes {r0.get('steps', args.steps)} steps of "
        f"{args.batch_size} (Adam at {_rates_text(results)}). Accuracy, agreement and logit cosine are on "
        f"{args.test_examples} held-out images. After training, the float model's "
        "BatchNorm statistics are recomputed from its final weights "
        "(`recalibrate_batch_norms`): trained this briefly, the moving averages lag "
        "the weights, and the MobileNets predicted one class in inference without it. "
        "Where a model's top-1 margins are small, agreement moves with near ties, and "
        "the logit cosine is the steadier measure of whether the .tflite computes what "
        "its Keras model computes.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPU core(s) shared with other "
        f"work; Keras {keras.__version__}, TensorFlow {_tf_version()}; LiteRT with "
        f"XNNPACK, {args.threads} thread(s).",
        "",
        "| " + " | ".join(rows[0]) + " |",
        "|" + "|".join(["---"] * 3 + ["---:"] * 13 + ["---"] * (len(rows[0]) - 16)) + "|",
    ]
    lines += ["| " + " | ".join(c.replace("|", "/") for c in row) + " |" for row in rows[1:]]
    lines += [
        "",
        "Columns: *int8 ops*, the report's `int8_fraction` (share of the operators "
        "handling data that touch no float tensor; integer exports have an int8 "
        "interface, so 100% means nothing runs in float); *agreement*, top-1 agreement "
        "of LiteRT with the Keras model the .tflite was exported from (for `ptq`, the "
        "float model), and how many of the images it misses are ties in the Keras "
        "model's logits (a QAT model's output is fake-quantized: two classes on the "
        "same integer, of which the Keras top-1 is the first); *logit cos*, mean cosine of the two logit vectors; *XNNPACK vs "
        "built-in*, for the integer exports, agreement / logit cosine of the same "
        ".tflite run by LiteRT's built-in kernels against XNNPACK (`kernel_spread`): "
        "both are correct integer runtimes that round differently in the last bit, so "
        "this is how far the .tflite disagrees with itself, the floor under the "
        "agreement a non-bit-exact simulation can reach on that model; *latency*, "
        "median over interleaved rounds of each round's median single-example LiteRT "
        "time, with the spread of the round medians; *XNNPACK ops*, the share of the "
        "operators LiteRT's XNNPACK delegate runs, and when not all, its partitions and "
        "the operators left to LiteRT's built-in kernels (`TFLiteModel.xnnpack_delegation`; "
        "on this x86 wheel XNNPACK takes no int8 standalone RELU, HARD_SWISH, AVERAGE_POOL_2D, "
        "GELU, RSQRT or SQUARED_DIFFERENCE, nor a 1x1 MAX_POOL_2D in any type, "
        "which is where an int8 file can run slower than the float one); *wrap s*, *step ms*, *export s*: "
        "wall time of wrapping, the median training step (first step excluded), and "
        "`export_model` (conversion, then the report's reading of operators, weights and "
        "latency; the agreement and layer-fidelity passes are not counted); *zeros*, *uniq/ch*: zero kernel weights and most distinct values "
        "in one output channel, as stored; *first departing layer*: for the QAT "
        "exports, `export.layer_fidelity` on a few test images (a layer departs at "
        "cosine < 0.99 or max error > 10% of its output's range, except an int8 "
        "tensor within 2 quantization steps (LSB) of the Keras output); differences "
        "of one step grow along a deep graph, so a faithful export of a deep model can "
        "depart somewhere; "
        "*computes differently (own inputs)*: each Keras layer run on the .tflite's own "
        "values of its inputs, the first that lands on another integer in more than 2% "
        "of its elements (else the most-off layer). Both read LiteRT's built-in "
        "kernels (XNNPACK keeps no intermediate tensors), whose int8 MEAN rounds "
        "a share of its outputs one step off the exact mean (docs/export.md) and whose "
        "LOGISTIC misses the exactly rounded sigmoid that XNNPACK and Keras give on a "
        "few percent of its outputs. MobileNetV3's first layer "
        "(Rescaling 1/127.5, offset -1) puts every output on a half step: a tie each "
        "runtime breaks its own way, so its row reads one step off on most elements.",
        "",
        "## Layer fidelity of the QAT exports",
        "",
    ]
    any_fidelity = False
    for r in results:
        f = r.get("fidelity")
        if not f:
            continue
        any_fidelity = True
        lines.append(f"* **{r['model']} {r['technique']}**: {f['summary']}.")
        raw = next((row for row in f.get("all_rows", ())
                    if row["cosine"] is not None and row["cosine"] < f["min_cosine"]), None)
        if raw is not None:
            lsb = "" if raw.get("lsb") is None else f", {raw['lsb']:.0f} LSB"
            lines.append(f"  First layer under cosine {f['min_cosine']} counting rounding: "
                         f"`{raw['path']}` ({raw['layer_type']}) cos {raw['cosine']:.3f}, "
                         f"err {raw['max_error']:.1%}{lsb}.")
        out = f.get("output")
        if out:
            lines.append(f"  Model output: cosine {out['cosine']:.4f}, max error "
                         f"{out['max_error']:.1%} of its range.")
        if f["rows"]:
            lines.append("  Around the first departure: " + "; ".join(
                f"`{row['path']}` ({row['layer_type']}) cos {row['cosine']:.3f}, err "
                f"{row['max_error']:.1%}" + ("" if row.get("lsb") is None
                                             else f", {row['lsb']:.0f} LSB")
                for row in f["rows"]) + ".")
    if not any_fidelity:
        lines.append("No QAT export in this run.")
    lines += _paired_section(results)
    failures = [r for r in results if r["status"] != "ok"]
    lines += ["", "## Failures", ""]
    lines += [f"* {r['model']} {r['technique']}: {r['status']}" for r in failures] or [
        "None in this run."]
    lines += [
        "",
        "## tensorflow-model-optimization side by side",
        "",
        tfmot_note,
        "",
        "## Not in this run",
        "",
        (", ".join(missing) + ": run `python benchmarks/model_zoo.py --models NAME` "
         "to add them (results are cached, the page is rewritten from the cache)."
         ) if missing else "Every model is covered.",
        "",
    ]
    return "\n".join(lines)


PAGE, PLOT = "model_zoo.md", "model_zoo.png"  # in --output unless named


def _page_flags(args):
    """The command-line flags that name this page, where not the defaults."""
    defaults = parse_args([])
    flags = ""
    for flag, attr, name in (("--markdown", "markdown", PAGE), ("--plot", "plot", PLOT)):
        value = getattr(args, attr)
        if os.path.abspath(value) != os.path.abspath(os.path.join(args.output, name)):
            flags += f" {flag} {os.path.relpath(value, ROOT)}"
    if args.title != defaults.title:
        flags += f' --title "{args.title}"'
    return flags


def _tf_version():
    from tfmot_lite.quiet import import_tensorflow

    return import_tensorflow().__version__


def plot(results, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tfmot_lite.atomic_file import atomic_write

    models = sorted({r["model"] for r in results})
    techniques = [t for t in TECHNIQUES if any(r["technique"] == t for r in results)]
    by = {(r["model"], r["technique"]): r for r in results}
    fig, axes = plt.subplots(1, 3, figsize=(6 + 2.2 * len(models), 4.4))
    width = 0.8 / max(1, len(techniques))
    x = np.arange(len(models))
    panels = (
        ("top-1 agreement with Keras (%)", lambda r: 100 * r["agreement"]),
        ("size (KiB)", lambda r: r["bytes"] / 1024),
        ("LiteRT latency (ms)", lambda r: r["latency_us"] / 1000),
    )
    for ax, (label, value) in zip(axes, panels):
        for k, t in enumerate(techniques):
            values = []
            for m in models:
                r = by.get((m, t))
                ok = r is not None and r["status"] == "ok" and r.get("agreement") is not None
                values.append(value(r) if ok else np.nan)
            ax.bar(x + (k - (len(techniques) - 1) / 2) * width, values, width, label=t)
        ax.set_title(label, fontsize=10)
        ax.set_xticks(x)
        ax.set_xticklabels(models, rotation=20, ha="right", fontsize=8)
    if any(r["status"] == "ok" and r.get("bytes") for r in results):
        axes[1].set_yscale("log")  # not on an empty panel (every row failed)
    axes[0].set_ylim(0, 105)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(techniques), fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    with atomic_write(path, "wb") as f:
        fig.savefig(f, dpi=100, format="png")
    plt.close(fig)
    return path


# -- tensorflow-model-optimization, where installed ------------------------------

TFMOT_SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import tensorflow as tf
    import tf_keras as keras
    import tensorflow_model_optimization as tfmot
    size = int(sys.argv[1])
    out = {}
    for name in sys.argv[2].split(","):
        try:
            model = getattr(keras.applications, name)(
                input_shape=(size, size, 3), weights=None, classes=10,
                classifier_activation=None)
            qat = tfmot.quantization.keras.quantize_model(model)
            converter = tf.lite.TFLiteConverter.from_keras_model(qat)
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            out[name] = {"status": "ok", "bytes": len(converter.convert())}
        except Exception as error:
            line = (f"{type(error).__name__}: {error}".splitlines() or ["?"])[0][:200]
            out[name] = {"status": "fails: " + line}
    print(json.dumps(out))
""")


def run_tfmot(models, size):
    """`(note for the page, {model: {"status", "bytes"}})`: tfmot's
    `quantize_model` and int8 conversion of the same architectures
    (untrained), or why it was not run (and an empty dict)."""
    import importlib.util

    missing = [m for m in ("tf_keras", "tensorflow_model_optimization")
               if importlib.util.find_spec(m) is None]
    if missing:
        return ("Skipped: " + ", ".join(missing) + " not importable on the machine "
                "this page was generated on."), {}
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    done = subprocess.run([sys.executable, "-c", TFMOT_SCRIPT, str(size), ",".join(models)],
                          capture_output=True, text=True, env=env, timeout=3600)
    if done.returncode:
        return "Skipped: " + (done.stderr.strip().splitlines() or ["tfmot run failed"])[-1], {}
    found = json.loads(done.stdout.strip().splitlines()[-1])
    wraps = sum(v["status"] == "ok" for v in found.values())
    note = (f"tfmot {_tfmot_version()} (`tf_keras`): `quantize_model` and an int8 "
            f"conversion of each architecture, untrained, in a subprocess: {wraps} of "
            f"{len(found)} wrap and convert. Its column in the table (on the `qat` rows) "
            "gives the size of its .tflite or its first error line.")
    return note, found


def _tfmot_version():
    try:
        from importlib.metadata import version

        return version("tensorflow-model-optimization")
    except Exception:  # noqa: BLE001 - a version string only
        return "?"


def _tfmot_cell(r, tfmot):
    if r["technique"] != "qat" or r["model"] not in tfmot:
        return "-"
    v = tfmot[r["model"]]
    return f"ok, {v['bytes'] / 1024:,.0f} KiB" if v["status"] == "ok" else v["status"]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="MobileNetV3Small,EfficientNetB0,ResNet50V2",
                        help="comma-separated keras.applications names, or 'all'")
    parser.add_argument("--techniques", default=",".join(TECHNIQUES))
    parser.add_argument("--size", type=int, default=96, help="input side (multiple of 8)")
    parser.add_argument("--epochs", type=int, default=1, help="float baseline epochs")
    parser.add_argument("--steps", type=int, default=8, help="fine-tuning steps per technique")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--train-examples", type=int, default=512)
    parser.add_argument("--test-examples", type=int, default=128)
    parser.add_argument("--calibration", type=int, default=100, help="PTQ calibration images")
    parser.add_argument("--fidelity-examples", type=int, default=2)
    parser.add_argument("--fidelity-all", action="store_true",
                        help="also run the layer comparison for ptq")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=20, help="inferences per latency round")
    parser.add_argument("--output", default=os.path.join(HERE, "results", "model_zoo"))
    parser.add_argument("--results", default=None,
                        help="cache JSON (default: OUTPUT/results.json)")
    parser.add_argument("--markdown", default=None,
                        help="the page (default: OUTPUT/model_zoo.md; the published pages "
                             "are docs/model_zoo.md and docs/model_zoo_trained.md)")
    parser.add_argument("--plot", default=None, help="the plot (default: OUTPUT/model_zoo.png)")
    parser.add_argument("--title", default="Model zoo: keras.applications end to end",
                        help="the page's heading")
    parser.add_argument("--sparse", choices=("auto", "off"), default="auto",
                        help="store pruned float exports sparse where LiteRT agrees (auto) "
                             "or always dense (off: one conversion instead of two)")
    parser.add_argument("--eager", action="store_true",
                        help="train and predict eagerly (no tf.function tracing: faster "
                             "for a step or two, slower for many)")
    parser.add_argument("--force", action="store_true", help="redo cached results")
    parser.add_argument("--skip-tfmot", action="store_true")
    parser.add_argument("--list", action="store_true", help="list the models and exit")
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite the page and plot from the cache, run nothing")
    args = parser.parse_args(argv)
    if args.size % 8:
        parser.error("--size must be a multiple of 8")
    args.markdown = args.markdown or os.path.join(args.output, PAGE)
    args.plot = args.plot or os.path.join(args.output, PLOT)
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.list:
        print("\n".join(all_models()))
        return None
    models = all_models() if args.models == "all" else [m for m in args.models.split(",") if m]
    unknown = [m for m in models if m not in all_models()]
    techniques = [t for t in args.techniques.split(",") if t]
    bad = [t for t in techniques if t not in TECHNIQUES]
    if unknown or bad:
        raise SystemExit(f"unknown models {unknown} / techniques {bad}; see --list and "
                         f"{', '.join(TECHNIQUES)}")
    os.makedirs(args.output, exist_ok=True)
    args.results = args.results or os.path.join(args.output, "results.json")
    cache = load_cache(args.results)
    start = time.perf_counter()
    for k, name in enumerate([] if args.report_only else models, 1):
        print(f"== {name} ({k}/{len(models)}), {args.size}x{args.size}, "
              f"{time.perf_counter() - start:.0f}s elapsed", flush=True)
        run_model(name, techniques, args, cache, log=lambda s: print(s, flush=True))
        keras.backend.clear_session()
    cache = load_cache(args.results) or cache  # with rows other runs stored meanwhile
    results = [r for key, r in sorted(cache.items(), key=lambda kv: (
        kv[1]["model"], TECHNIQUES.index(kv[1]["technique"])))
        if r["size"] == args.size]
    for r in results:
        _refresh_fidelity(r)
    note, tfmot = (("Skipped (--skip-tfmot).", {}) if args.skip_tfmot
                   else run_tfmot(sorted({r["model"] for r in results}), args.size))
    print("\n" + export.text_table(table_rows(results, tfmot)))
    print("\ntfmot: " + note)
    from tfmot_lite.atomic_file import write_text_atomic

    write_text_atomic(args.markdown, to_markdown(results, args, note, tfmot))
    plot(results, args.plot, f"keras.applications at {args.size}x{args.size}: "
         "tfmot-lite techniques exported to LiteRT")
    print(f"wrote {args.markdown}, {args.plot}, {args.results}")
    return results


if __name__ == "__main__":
    main()
