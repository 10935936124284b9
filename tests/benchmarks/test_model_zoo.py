"""benchmarks/model_zoo.py's per-model function on three keras.applications
models (a MobileNetV3, an EfficientNet, and DenseNet121 with its standalone
BatchNormalization-ReLU before each convolution and its poolings a
Concatenate reads), tiny: 32x32, no baseline training, one fine-tuning step.
QAT wraps and exports fully integer; pruning's zeros survive the export (the
report's fields). A fresh ConvNeXt of ConvNeXtTiny's stages, one block each
(LayerNormalization, GELU, Dense over a grid, LayerScale), is exported and
compared layer by layer in tests/quantization/test_zero_offsets.py."""

import importlib.util
import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _zoo():
    spec = importlib.util.spec_from_file_location(
        "model_zoo", os.path.join(ROOT, "benchmarks", "model_zoo.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _page():
    """benchmarks/model_zoo_page.py (loading the zoo puts benchmarks/ on
    sys.path)."""
    _zoo()
    import model_zoo_page

    return model_zoo_page


# Pruning once (MobileNetV3Small: its masks through the hard-swish blocks);
# clustering's 16 values per kernel through the export are asserted on the
# digits models (tests/clustering). EfficientNetB0 is here for QAT;
# DenseNet121 for its standalone BatchNormalization and its poolings a
# Concatenate and a BatchNorm read (`QuantizeSameScale`).
CASES = [("MobileNetV3Small", ("qat", "prune")),
         ("EfficientNetB0", ("qat",)),
         ("DenseNet121", ("qat",))]
SAME_SCALE = {"DenseNet121": 4}  # poolings with a range of their own


@pytest.mark.slow
@pytest.mark.parametrize("name,techniques", CASES, ids=[c[0] for c in CASES])
def test_zoo_model_qat_pruning_clustering(name, techniques, tmp_path):
    zoo = _zoo()
    logged = []
    results = zoo.run_model(
        name, techniques, log=logged.append, output=str(tmp_path),
        size=32, epochs=0, steps=1, batch_size=8, train_examples=8, test_examples=4,
        runs=1, rounds=0, fidelity_examples=1, sparse="off", eager=True)
    assert set(results) == set(techniques)
    assert all(r["status"] == "ok" for r in results.values()), {
        t: r["status"] for t, r in results.items()}
    qat = results["qat"]
    assert qat["wrapped"] and qat["trained"] and qat["exported"]
    # Fully integer; where not, the message lists the float operators.
    assert qat["int8_fraction"] == 1.0, f"float operators: {qat['float_ops']}"
    assert qat["float_ops"] == []
    # The layer comparison ran and its verdict is in the log and the result.
    assert qat["fidelity"]["compared"] > 10
    assert any(line.startswith(f"[{name}] qat: wrap") for line in logged)
    # Each layer also ran on the .tflite's own inputs: the convolutions (BatchNorm
    # folded) land on its integers but for rounding ties.
    rows = qat["fidelity"]["all_rows"]
    convs = [r for r in rows if r["layer_type"] == "QuantizeConvBatchNorm"
             and r["local_share"] is not None]
    assert convs and max(r["local_share"] for r in convs) <= 0.02, max(
        convs, key=lambda r: r["local_share"] or 0)
    pools = [r for r in rows if r["layer_type"] == "QuantizeSameScale"]
    assert len(pools) == SAME_SCALE.get(name, 0)
    assert all(r["local_share"] <= 0.01 for r in pools), pools
    # The same .tflite under LiteRT's built-in kernels and under XNNPACK (on
    # these untrained models, logits of a few steps: far apart on ResNet50V2).
    assert 0.0 <= qat["kernels_agreement"] <= 1.0 and -1.0 <= qat["kernels_cosine"] <= 1.0
    if "prune" in results:
        assert results["prune"]["sparsity"] >= 0.45
    if "cluster" in results:
        assert results["cluster"]["max_unique_per_channel"] <= 16
    for r in results.values():
        assert 0.0 <= r["agreement"] <= 1.0 and r["bytes"] > 0
        assert len(r["test_correct"]) == r["examples"] == 4
        assert np.mean(r["test_correct"]) == r["accuracy"]
        assert os.path.exists(os.path.join(zoo.ROOT, r["path"]))


def test_recalibrated_batch_norms_hold_the_mean_of_their_batch_statistics():
    """After `recalibrate_batch_norms`, a BatchNorm's moving mean and variance
    are the plain average of its batch statistics over the data, whatever
    they held before, and its momentum is what it was."""
    import keras
    import numpy as np

    zoo = _zoo()
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    bn = keras.layers.BatchNormalization(momentum=0.99)
    model = keras.Model(inputs, bn(keras.layers.Dense(3)(inputs)))
    bn.moving_mean.assign(np.full(3, 50.0, "float32"))
    bn.moving_variance.assign(np.full(3, 9.0, "float32"))
    x = np.random.default_rng(0).normal(2.0, 3.0, (40, 4)).astype("float32")

    zoo.recalibrate_batch_norms(model, x, batch_size=16)

    z = np.asarray(model.layers[1](x))
    batches = [z[i:i + 16] for i in range(0, 40, 16)]
    np.testing.assert_allclose(bn.moving_mean.numpy(),
                               np.mean([b.mean(0) for b in batches], axis=0), rtol=1e-4)
    np.testing.assert_allclose(bn.moving_variance.numpy(),
                               np.mean([b.var(0) for b in batches], axis=0), rtol=1e-4)
    assert bn.momentum == 0.99


def test_runs_of_different_models_keep_each_others_results(tmp_path):
    """Two runs started from the same results file (`--models A` and
    `--models B` in two processes), each storing its rows: the file ends
    with both, not with whichever run wrote last."""
    import json
    import types

    zoo = _zoo()
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"Old@96/float": {"kept": True}}))
    args = types.SimpleNamespace(results=str(path))
    first, second = zoo.load_cache(str(path)), zoo.load_cache(str(path))
    zoo._store(first, {"model": "A", "size": 96, "technique": "qat"}, args)
    zoo._store(second, {"model": "B", "size": 96, "technique": "qat"}, args)
    assert set(json.loads(path.read_text())) == {"Old@96/float", "A@96/qat", "B@96/qat"}


def test_a_run_whose_every_row_failed_still_draws_its_plot(tmp_path):
    """A size panel with no bar cannot be log-scaled: the plot of a run
    that only failed is drawn (empty) instead of raising."""
    failed = {"model": "DenseNet121", "technique": "qat", "status": "fails at export: X"}
    path = _page().plot([failed], str(tmp_path / "zoo.png"), "only failures")
    assert os.path.getsize(path) > 0


def test_disagreements_on_ties_count_images_whose_keras_top1_is_a_tie():
    """A fake-quantized output can put two classes on one integer; the
    agreement cell says how many of its misses are such ties."""
    zoo = _zoo()
    keras_logits = np.array([[3.0, 3.0, 1.0],    # tie, .tflite picks the other
                             [2.0, 1.0, 1.0],    # no tie (the tie is below top-1)
                             [0.0, 5.0, 5.0],    # tie, .tflite agrees
                             [4.0, 1.0, 0.0]])   # no tie, .tflite misses
    lite_logits = np.array([[2.9, 3.1, 1.0],
                            [2.0, 1.0, 1.0],
                            [0.0, 5.1, 4.9],
                            [1.0, 4.0, 0.0]])
    assert zoo._disagreements_on_ties(keras_logits, lite_logits) == 1
    cell = _page().agreement_cell
    assert cell({"agreement": 0.5, "disagreements_on_ties": 1}) == "0.500 (1 on ties)"
    assert cell({"agreement": 1.0, "disagreements_on_ties": 0}) == "1.000"
    assert cell({"agreement": 1.0}) == "1.000"  # results cached before it


def test_a_model_without_batch_norm_trains_its_baseline_at_the_smaller_rate():
    """VGG16 does not learn at the baseline's Adam 1e-3 (no BatchNorm): a
    model without BatchNormalization trains at 1e-4 and caches its weights
    under a name of its own, while models with BatchNorm keep the name their
    cached weights were saved under."""
    import keras

    zoo = _zoo()
    inputs = keras.Input((4,))
    plain = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    normed = keras.Model(inputs, keras.layers.BatchNormalization()(keras.layers.Dense(3)(inputs)))

    assert zoo.float_learning_rate(plain) == 1e-4
    assert zoo.float_learning_rate(normed) == 1e-3
    assert zoo.baseline_weights_name(10, 1e-3) == "float_e10_bn0.9_recalibrated.weights.h5"
    assert zoo.baseline_weights_name(10, 1e-4) == "float_e10_bn0.9_lr0.0001_recalibrated.weights.h5"


def test_qat_and_ptq_are_compared_image_by_image():
    """The page's paired comparison counts the images only one of the two
    .tflite files classifies right, with the exact McNemar p-value
    (2 P(Binomial(n, 1/2) <= min), hand-computed here)."""
    page = _page()
    results = [
        {"model": "A", "technique": "qat", "test_correct": [1, 1, 0, 1, 1, 1, 0, 1, 1, 0]},
        {"model": "A", "technique": "ptq", "test_correct": [1, 0, 0, 0, 0, 0, 0, 1, 1, 1]},
        {"model": "B", "technique": "qat", "test_correct": [1, 1]},   # no PTQ row
        {"model": "C", "technique": "qat"},                           # cached before
        {"model": "C", "technique": "ptq", "test_correct": [1]},
    ]
    (row,) = page.paired_accuracy(results)
    model, qat_acc, ptq_acc, only_qat, only_ptq, p = row
    assert (model, qat_acc, ptq_acc, only_qat, only_ptq) == ("A", 0.7, 0.4, 4, 1)
    assert p == 2 * (1 + 5) / 2 ** 5  # n = 5 discordant images, min 1
    assert page.mcnemar_exact(0, 0) == 1.0 and page.mcnemar_exact(3, 3) == 1.0
    assert "| A | 0.700 | 0.400 | 4 | 1 | 0.38 |" in page.paired_section(results)


def test_a_cached_fidelity_record_refreshes_to_the_same_verdicts():
    """A result keeps every row of its layer comparison; the page recomputes
    the verdicts from those rows (`refresh_fidelity`), so a record refreshed
    under unchanged rules is the record measured, and a rule that changes
    (here the cosine a layer departs at) moves the verdict."""
    from tfmot_lite.export.fidelity import FidelityReport, LayerFidelity

    page = _page()

    def row(path, cosine, share):
        return LayerFidelity(path=path, layer_type="Conv2D", shape=(4,), match="name",
                             tensor=path, cosine=cosine, max_error=0.01, lsb=None,
                             local_share=share, local_lsb=1.0, local_bias=0.0,
                             local_elements=1000)

    rows = [row("a", 0.999, 0.0), row("b", 0.995, 0.05), row("c", 0.97, 0.01)]
    record = page.fidelity_record(FidelityReport(rows=rows, examples=2))
    assert record["first_departure"]["path"] == "c"
    assert record["first_local_departure"]["path"] == "b"
    assert record["worst_local"]["path"] == "b" and record["local_compared"] == 3
    assert [r["path"] for r in record["rows"]] == ["a", "b", "c"]

    result = {"fidelity": dict(record)}
    page.refresh_fidelity(result)
    assert result["fidelity"] == record

    result["fidelity"]["min_cosine"] = 0.998
    page.refresh_fidelity(result)
    assert result["fidelity"]["first_departure"]["path"] == "b"


def test_tfmots_column_runs_each_architecture_once(tmp_path, monkeypatch):
    """tfmot's `quantize_model` runs in a subprocess; its results are
    cached per model and size, so a later page (a run of one more model)
    runs only the architectures it has not tried, and a new tfmot version
    tries them all again."""
    import importlib.util
    import json
    import subprocess
    import types

    _zoo()
    import model_zoo_tfmot

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    versions = iter(["0.8.1", "0.8.1", "0.9.0"])
    monkeypatch.setattr(model_zoo_tfmot, "tfmot_version", lambda: next(versions))
    tried = []

    def run(command, **kwargs):
        names = command[-1].split(",")
        tried.append(names)
        out = {n: {"status": "ok", "bytes": 1024} if n != "B" else {"status": "fails: X"}
               for n in names}
        return types.SimpleNamespace(returncode=0, stdout=json.dumps(out), stderr="")

    monkeypatch.setattr(subprocess, "run", run)
    path = str(tmp_path / "tfmot.json")
    note, found = model_zoo_tfmot.run_tfmot(["A", "B"], 96, path)
    assert found == {"A": {"status": "ok", "bytes": 1024}, "B": {"status": "fails: X"}}
    assert "1 of 2 wrap and convert" in note
    _, found = model_zoo_tfmot.run_tfmot(["A", "B", "C"], 96, path)
    assert set(found) == {"A", "B", "C"}
    model_zoo_tfmot.run_tfmot(["A"], 96, path)  # another tfmot version
    assert tried == [["A", "B"], ["C"], ["A"]]


def _append_under_lock(path, item, times):
    from locked_json import update_json  # forked: already imported

    for _ in range(times):
        update_json(path, lambda value: {"items": value.get("items", []) + [item]})


def test_processes_updating_one_file_keep_each_others_parts(tmp_path):
    """Four processes each add 25 items to one JSON file through
    `update_json`: all 100 are there (without the lock, a process that read
    the file before another wrote it would write its own copy back over
    the other's items)."""
    import multiprocessing

    _zoo()
    from locked_json import load_json

    path = str(tmp_path / "results.json")
    # Forked (POSIX): the workers only read and write files, and start
    # without importing Keras again.
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_append_under_lock, args=(path, i, 25)) for i in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert all(w.exitcode == 0 for w in workers)
    items = load_json(path)["items"]
    assert sorted(items) == sorted([0, 1, 2, 3] * 25)


def test_tfmots_column_keeps_what_another_run_stored_meanwhile(tmp_path, monkeypatch):
    """A zoo run of model B, while its tfmot subprocess runs, sees a run of
    model A store A's result: the file keeps both."""
    import importlib.util
    import json
    import subprocess
    import types

    _zoo()
    import model_zoo_tfmot

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(model_zoo_tfmot, "tfmot_version", lambda: "0.8.1")
    path = str(tmp_path / "tfmot.json")

    def run(command, **kwargs):
        names = command[-1].split(",")
        if names == ["B"]:  # the other run finishes first
            model_zoo_tfmot.run_tfmot(["A"], 96, path)
        return types.SimpleNamespace(
            returncode=0, stdout=json.dumps({n: {"status": "ok"} for n in names}), stderr="")

    monkeypatch.setattr(subprocess, "run", run)
    model_zoo_tfmot.run_tfmot(["B"], 96, path)
    with open(path, encoding="utf-8") as f:
        assert set(json.load(f)["results"]) == {"A@96", "B@96"}
