"""Distillation with every technique: the callbacks reach the student's
wrappers through the distiller, and strip / shrink / export take the
student (or the distiller) as before."""

import keras
import numpy as np
import pytest

import tfmot_lite as tfmot
from distill_models import LOSS, images, same_weights, snapshot, trained_teacher
from tfmot_lite import export
from tfmot_lite.sparsity.callbacks import pruning_wrappers

sk = tfmot.sparsity.keras
qk = tfmot.quantization.keras
ck = tfmot.clustering.keras


pytestmark = pytest.mark.slow  # each trains and most export: 10-60 s


@pytest.fixture(scope="module")
def teacher():
    keras.utils.set_random_seed(0)
    return trained_teacher()


def fit(student, teacher, epochs=2, callbacks=()):
    distiller = tfmot.distillation.distill(student, teacher)
    distiller.compile(keras.optimizers.Adam(1e-3), LOSS, metrics=["accuracy"])
    x, y = images()
    history = distiller.fit(x, y, epochs=epochs, batch_size=8, verbose=0,
                            callbacks=list(callbacks))
    assert np.all(np.isfinite(history.history["loss"]))
    return distiller


def kernels(model):
    return [np.asarray(layer.kernel) for layer in model.layers if hasattr(layer, "kernel")]


def test_pruning_masks_update_through_the_distiller_and_strip_works(teacher, tmp_path):
    saved = snapshot(teacher)
    pruned = sk.prune_low_magnitude(
        teacher, pruning_schedule=sk.PolynomialDecay(0.2, 0.6, 0, 4, frequency=2))
    distiller = fit(pruned, teacher, callbacks=[
        sk.UpdatePruningStep(), sk.PruningSummaries(str(tmp_path), update_freq=2)])
    for wrapper in pruning_wrappers(distiller):  # the student's, via the hook
        for mask in wrapper.masks:
            assert 1 - np.mean(np.asarray(mask)) == pytest.approx(0.6, abs=0.02)
    assert pruning_wrappers(distiller) == pruning_wrappers(pruned)
    stripped = sk.strip_pruning(distiller.student)
    assert all(np.mean(k == 0) == pytest.approx(0.6, abs=0.02) for k in kernels(stripped))
    x, _ = images()
    np.testing.assert_allclose(stripped.predict(x, verbose=0), pruned.predict(x, verbose=0),
                               atol=1e-5)
    assert list(tmp_path.rglob("events.out.tfevents.*"))
    assert same_weights(teacher, saved)
    # The pruned student saves and loads as before.
    distiller.student.save(tmp_path / "student.keras")
    loaded = keras.models.load_model(tmp_path / "student.keras")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), pruned.predict(x, verbose=0),
                               atol=1e-6)


def test_pruned_student_still_needs_the_callback(teacher):
    pruned = sk.prune_low_magnitude(teacher, pruning_schedule=sk.ConstantSparsity(0.5, 0))
    with pytest.raises(Exception, match="UpdatePruningStep"):
        fit(pruned, teacher, epochs=1)


def test_prune_preserving_qat_keeps_zeros(teacher):
    pruned = sk.prune_low_magnitude(
        teacher, pruning_schedule=sk.ConstantSparsity(0.5, 0, frequency=1))
    pruned = sk.strip_pruning(fit(pruned, teacher, 1, [sk.UpdatePruningStep()]).student)
    pqat = qk.quantize_apply(qk.quantize_annotate_model(pruned),
                             tfmot.experimental.combine.Default8BitPrunePreserveQuantizeScheme())
    distiller = fit(pqat, teacher)
    x, y = images()
    report = export.export_model(distiller, "int8", data=x, labels=y, latency_runs=2)
    assert report.techniques == ["distillation", "qat"]
    assert report.name == "distillation+qat+int8"
    assert report.agreement >= 0.9
    assert report.sparsity >= 0.45


def test_clustering_with_summaries(teacher, tmp_path):
    clustered = ck.cluster_weights(teacher, number_of_clusters=8)
    distiller = fit(clustered, teacher, callbacks=[ck.ClusteringSummaries(str(tmp_path))])
    stripped = ck.strip_clustering(distiller.student)
    assert all(len(np.unique(k)) <= 8 for k in kernels(stripped))
    assert list(tmp_path.rglob("events.out.tfevents.*"))


def test_quantization_aware_training_exports_the_student(teacher):
    distiller = fit(qk.quantize_model(teacher), teacher)
    x, y = images()
    report = export.export_model(distiller, "int8", data=x, labels=y, latency_runs=2)
    # Every operator but the float interface's QUANTIZE and DEQUANTIZE.
    assert "distillation" in report.techniques
    assert report.int8_fraction == pytest.approx(1 - 2 / len(report.operators))
    assert report.agreement >= 0.9


def test_channel_pruning_links_the_student_and_shrinks(teacher):
    pruned = sk.prune_channels(
        teacher, pruning_schedule=sk.PolynomialDecay(0.0, 0.5, 0, 4, frequency=2))
    distiller = fit(pruned, teacher, callbacks=[sk.UpdatePruningStep()])
    small, summary = sk.shrink(distiller.student, return_summary=True)
    assert summary.params_after < summary.params_before
    x, _ = images()
    np.testing.assert_allclose(small.predict(x, verbose=0), pruned.predict(x, verbose=0),
                               atol=1e-4)
