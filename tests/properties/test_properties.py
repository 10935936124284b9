"""Property-based tests (hypothesis) over random shapes, sparsities and
cluster counts.

* magnitude pruning zeroes exactly `round(sparsity * size)` weights, the
  smallest ones;
* N:M pruning leaves m zeros in every group of n along input channels;
* strip is idempotent and preserves predictions (pruning and clustering);
* clustering never yields more values than its cluster count;
* schedules and wrapped models round-trip through serialization.

Examples are few and small (each builds Keras layers), `deadline=None`.
"""

import json

import keras
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from model_builders import dense_model

from tfmot_lite.clustering import keras as clustering
from tfmot_lite.sparsity import keras as sparsity
from tfmot_lite.sparsity import masks

FAST = settings(
    max_examples=12, deadline=None, derandomize=True,
    # No shrinking: a failure is reported as found (shrinking rebuilds
    # models for minutes).
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FEW = settings(FAST, max_examples=4)

dims = st.integers(min_value=1, max_value=9)
shapes = st.tuples(st.integers(2, 9), dims)
fractions = st.floats(min_value=0.0, max_value=0.95, allow_nan=False)


def distinct_weights(shape, seed):
    """Random weights with distinct, non-zero magnitudes (no ties)."""
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))
    magnitudes = rng.permutation(np.arange(1, size + 1)).astype("float32") / size
    signs = rng.choice([-1.0, 1.0], size=size).astype("float32")
    return (magnitudes * signs).reshape(shape)


def seeded_dense_model(units_in, units_out, seed):
    keras.utils.set_random_seed(seed)
    return dense_model(units_in, hidden=units_out + 2, classes=units_out)


@FAST
@given(shape=shapes, sparsity=fractions, seed=st.integers(0, 1000))
def test_magnitude_mask_zeroes_exactly_the_smallest(shape, sparsity, seed):
    w = distinct_weights(shape, seed)
    mask, threshold = masks.magnitude_mask(w, sparsity)
    mask = keras.ops.convert_to_numpy(mask)
    expected_zeros = int(round(sparsity * w.size))
    assert int((mask == 0).sum()) == expected_zeros
    assert set(np.unique(mask)) <= {0.0, 1.0}
    kept, pruned = np.abs(w[mask == 1]), np.abs(w[mask == 0])
    if kept.size and pruned.size:
        assert pruned.max() < kept.min()
        assert float(keras.ops.convert_to_numpy(threshold)) == pytest.approx(kept.min())


@FAST
@given(
    shape=st.tuples(st.integers(1, 3), st.integers(1, 11), st.integers(1, 4)),
    m_by_n=st.integers(2, 8).flatmap(lambda n: st.tuples(st.integers(1, n - 1), st.just(n))),
    seed=st.integers(0, 1000),
)
def test_m_by_n_pattern_holds(shape, m_by_n, seed):
    m, n = m_by_n
    w = distinct_weights(shape, seed)  # (k, input channels, output channels)
    mask, _ = masks.m_by_n_mask(w, m_by_n)
    mask = keras.ops.convert_to_numpy(mask)
    pruned = w * mask
    assert masks.is_pruned_m_by_n(pruned, m_by_n)
    channels = shape[-2]
    for start in range(0, channels, n):
        group = slice(start, min(start + n, channels))
        zeros = (mask[:, group, :] == 0).sum(axis=1)
        size = group.stop - group.start
        if size == n:
            # Exactly m zeros, on the smallest magnitudes of each group.
            assert (zeros == m).all()
            mags = np.abs(w[:, group, :])
            kept = np.where(mask[:, group, :] == 1, mags, np.inf).min(axis=1)
            dropped = np.where(mask[:, group, :] == 0, mags, -np.inf).max(axis=1)
            assert (dropped < kept).all()
        else:
            assert (zeros >= max(0, m - (n - size))).all()


def set_masks(model, sparsity_value):
    for layer in model.layers:
        if isinstance(layer, sparsity.PruneLowMagnitude):
            layer.update_masks(sparsity_value)


@FEW
@given(units=st.tuples(st.integers(2, 8), st.integers(1, 5)), sparsity_value=fractions,
       seed=st.integers(0, 100))
def test_strip_pruning_is_idempotent_and_preserves_predictions(units, sparsity_value, seed):
    pruned = sparsity.prune_low_magnitude(seeded_dense_model(*units, seed))
    set_masks(pruned, sparsity_value)
    x = np.random.default_rng(seed).normal(size=(5, units[0])).astype("float32")
    stripped = sparsity.strip_pruning(pruned)
    again = sparsity.strip_pruning(stripped)
    np.testing.assert_allclose(stripped.predict(x, verbose=0), pruned.predict(x, verbose=0),
                               rtol=1e-6, atol=1e-6)
    for a, b in zip(stripped.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    kernel = keras.ops.convert_to_numpy(stripped.get_layer("hidden").kernel)
    assert int((kernel == 0).sum()) == int(round(sparsity_value * kernel.size))


@FEW
@given(
    units=st.tuples(st.integers(3, 8), st.integers(1, 4)),
    clusters=st.integers(2, 6),
    init=st.sampled_from(list(clustering.CentroidInitialization)),
    seed=st.integers(0, 100),
)
def test_clustering_never_exceeds_cluster_count(units, clusters, init, seed):
    model = seeded_dense_model(*units, seed)
    # No more clusters than the head has weights: (units_out + 2) x units_out.
    clusters = min(clusters, (units[1] + 2) * units[1])
    clustered = clustering.cluster_weights(
        model, number_of_clusters=clusters, cluster_centroids_init=init
    )
    x = np.random.default_rng(seed).normal(size=(5, units[0])).astype("float32")
    stripped = clustering.strip_clustering(clustered)
    for name in ("hidden", "head"):
        kernel = keras.ops.convert_to_numpy(stripped.get_layer(name).kernel)
        assert 1 <= np.unique(kernel).size <= clusters
    np.testing.assert_allclose(stripped.predict(x, verbose=0),
                               clustered.predict(x, verbose=0), rtol=1e-5, atol=1e-5)
    again = clustering.strip_clustering(stripped)
    for a, b in zip(stripped.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)


steps = st.integers(0, 50)


@FAST
@given(
    kind=st.sampled_from(["constant", "polynomial"]),
    a=fractions, b=fractions, begin=steps, span=steps,
    frequency=st.integers(1, 20), power=st.integers(1, 5), end_open=st.booleans(),
)
def test_schedules_round_trip(kind, a, b, begin, span, frequency, power, end_open):
    if kind == "constant":
        end = -1 if end_open else begin + span
        schedule = sparsity.ConstantSparsity(a, begin, end_step=end, frequency=frequency)
    else:
        schedule = sparsity.PolynomialDecay(a, b, begin, begin + span, power=power,
                                            frequency=frequency)
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(schedule)
    )
    assert restored == schedule
    for step in range(0, begin + span + 3, 3):
        assert restored(step) == schedule(step)


@FEW
@given(
    technique=st.sampled_from(["prune", "prune_m_by_n", "cluster"]),
    units=st.tuples(st.integers(4, 8), st.integers(2, 4)),
    seed=st.integers(0, 100),
)
def test_wrapped_models_round_trip_through_keras_files(technique, units, seed, tmp_path_factory):
    model = seeded_dense_model(*units, seed)
    if technique == "prune":
        wrapped = sparsity.prune_low_magnitude(model, sparsity.ConstantSparsity(0.5, 0))
        set_masks(wrapped, 0.5)
    elif technique == "prune_m_by_n":
        wrapped = sparsity.prune_low_magnitude(model, sparsity_m_by_n=(2, 4))
        set_masks(wrapped, 0.0)
    else:
        wrapped = clustering.cluster_weights(model, number_of_clusters=2 + seed % 3)
    path = tmp_path_factory.mktemp("roundtrip") / "m.keras"
    wrapped.save(path)
    loaded = keras.models.load_model(path)
    assert [type(l) for l in loaded.layers] == [type(l) for l in wrapped.layers]
    # Compared as JSON, the form they are saved in (tuples become lists).
    assert [json.dumps(l.get_config(), sort_keys=True) for l in loaded.layers] == [
        json.dumps(l.get_config(), sort_keys=True) for l in wrapped.layers
    ]
    for a, b in zip(wrapped.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    x = np.random.default_rng(seed).normal(size=(4, units[0])).astype("float32")
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), wrapped.predict(x, verbose=0))
