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
redoes), tfmot's column per model and size in `<output>/tfmot.json`, the
trained float baseline in `<output>/<model>@<size>/`. The
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

Beside it: `model_zoo_settings.py` (the models, techniques and learning
rates), `model_zoo_page.py` (the page and plot from the cached results),
`model_zoo_tfmot.py` (tfmot's column).
"""

import argparse
import dataclasses
import datetime
import os
import random
import statistics
import sys
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tfmot_lite as tfmot  # noqa: E402  (first: TensorFlow's banner silenced)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from tfmot_lite import data as datasets  # noqa: E402
from tfmot_lite import export  # noqa: E402
from tfmot_lite.export.runtime import TFLiteModel  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:  # the modules beside it, also when imported from a file path
    sys.path.insert(0, HERE)
from model_zoo_page import (  # noqa: E402
    agreement_cell, fidelity_record, plot, refresh_fidelity, table_rows, to_markdown)
from model_zoo_settings import (  # noqa: E402
    DEFAULT_TITLE, FLOAT_LEARNING_RATE, FLOAT_LEARNING_RATE_WITHOUT_BATCH_NORM, INTEGER,
    LEARNING_RATES, PAGE, PLOT, QAT, ROOT, TECHNIQUES, all_models)
from model_zoo_tfmot import run_tfmot  # noqa: E402
from locked_json import load_json, update_json  # noqa: E402

# Constructors that take `include_preprocessing` (or always rescale 0..255).
_PIXELS_0_255 = ("MobileNetV3", "EfficientNet", "ConvNeXt")


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
            result["fidelity"] = fidelity_record(fidelity)
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
        update_json(args.results, lambda on_disk: {**on_disk, key: result})


def load_cache(path):
    return load_json(path)


def _progress(r):
    if r["status"] != "ok":
        return r["status"]
    parts = [f"wrap {r['wrap_s']:.1f}s"]
    if r.get("step_ms"):
        parts.append(f"step {r['step_ms']:.0f} ms")
    parts += [f"export {r['export_s']:.1f}s", f"int8 ops {r['int8_fraction']:.0%}",
              f"agreement {agreement_cell(r)}", f"logit cos {r['logit_cosine']:.4f}",
              f"{r['bytes'] / 1024:,.0f} KiB"]
    if "kernels_agreement" in r:
        parts.append(f"XNNPACK vs built-in kernels {r['kernels_agreement']:.3f} / "
                     f"{r['kernels_cosine']:.4f}")
    if r.get("fidelity"):
        parts.append(r["fidelity"]["summary"])
    return ", ".join(parts)


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
    parser.add_argument("--title", default=DEFAULT_TITLE,
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
        refresh_fidelity(r)
    note, tfmot = (("Skipped (--skip-tfmot).", {}) if args.skip_tfmot
                   else run_tfmot(sorted({r["model"] for r in results}), args.size,
                                  os.path.join(args.output, "tfmot.json")))
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
