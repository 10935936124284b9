import numpy as np
import pytest

from tfmot_lite.sparsity import keras as sparsity


def decide(schedule, step):
    should, value = schedule(step)
    return bool(np.asarray(should)), float(np.asarray(value))


def test_constant_sparsity_prunes_on_frequency_inside_range():
    s = sparsity.ConstantSparsity(0.6, begin_step=10, end_step=30, frequency=10)
    assert [decide(s, t)[0] for t in (0, 9, 10, 15, 20, 30, 31, 40)] == [
        False, False, True, False, True, True, False, False]
    assert decide(s, 10)[1] == pytest.approx(0.6)


def test_constant_sparsity_open_end_keeps_pruning():
    s = sparsity.ConstantSparsity(0.5, begin_step=0)
    assert decide(s, 100_000)[0] is True
    assert decide(s, 100_001)[0] is False


def test_polynomial_decay_follows_cubic_by_default():
    s = sparsity.PolynomialDecay(0.25, 0.75, begin_step=0, end_step=100, frequency=1)
    for step in (0, 25, 50, 100, 150):
        p = min(step / 100, 1.0)
        expected = 0.75 + (0.25 - 0.75) * (1 - p) ** 3
        assert decide(s, step)[1] == pytest.approx(expected, abs=1e-6)
    assert decide(s, 150)[0] is False  # past end_step: no more updates
    assert s.power == 3


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: sparsity.ConstantSparsity(1.0, 0), "target_sparsity"),
        (lambda: sparsity.ConstantSparsity(-0.1, 0), "target_sparsity"),
        (lambda: sparsity.ConstantSparsity(0.5, -1), "begin_step"),
        (lambda: sparsity.ConstantSparsity(0.5, 10, end_step=5), "end_step"),
        (lambda: sparsity.ConstantSparsity(0.5, 0, frequency=0), "frequency"),
        (lambda: sparsity.PolynomialDecay(0.2, 1.5, 0, 10), "final_sparsity"),
        (lambda: sparsity.PolynomialDecay(0.2, 0.5, 0, -1), "end_step"),
        (lambda: sparsity.PolynomialDecay(0.2, 0.5, 20, 10), "end_step"),
        (lambda: sparsity.PolynomialDecay(0.2, 0.5, 0, 10, power=0), "power"),
    ],
)
def test_bad_schedule_arguments_are_named(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_schedules_round_trip_through_keras_serialization():
    import keras

    for s in (
        sparsity.ConstantSparsity(0.3, 5, 50, 7),
        sparsity.PolynomialDecay(0.1, 0.9, 0, 99, power=2, frequency=3),
    ):
        config = keras.saving.serialize_keras_object(s)
        assert keras.saving.deserialize_keras_object(config) == s
