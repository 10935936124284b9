"""benchmarks/integer_inference.py, one round: it times predict with the
integer inference paths and without, and leaves them switched on. The
model it builds by name is a small stand-in with MobileNetV3's layers (a
Conv-BN with a hard-swish, a squeeze-and-excite, a residual Add) and a
Concatenate (whose integer path the switch must take with its `partial`
argument): tracing the real one's two predict functions took a minute of
CI."""

import os
import sys

import keras
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _small_mobilenet_v3(input_shape, weights, classes):
    L = keras.layers
    inputs = keras.Input(input_shape)
    x = L.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = L.BatchNormalization()(L.Conv2D(16, 3, strides=2, padding="same", use_bias=False)(x))
    x = L.Activation("hard_swish")(x)
    gate = L.GlobalAveragePooling2D(keepdims=True)(x)
    gate = L.Conv2D(16, 1, activation="hard_sigmoid")(L.Conv2D(8, 1, activation="relu")(gate))
    y = L.BatchNormalization()(L.Conv2D(16, 1, use_bias=False)(L.Multiply()([x, gate])))
    x = L.GlobalAveragePooling2D()(L.Concatenate()([L.Add()([x, y]), x]))
    return keras.Model(inputs, L.Dense(classes)(x))


@pytest.mark.slow
def test_times_both_ways_and_restores_the_integer_paths(capsys, monkeypatch):
    monkeypatch.syspath_prepend(os.path.join(ROOT, "benchmarks"))
    sys.modules.pop("integer_inference", None)
    import integer_inference

    from tfmot_lite.quantization.input_range import BorrowsInputRange

    monkeypatch.setattr(keras.applications, "MobileNetV3Small", _small_mobilenet_v3,
                        raising=False)
    shipped = BorrowsInputRange.integer_input
    integer_inference.main(["--models", "MobileNetV3Small", "--size", "32", "--images", "8",
                            "--rounds", "1"])
    row = capsys.readouterr().out.splitlines()[-1]
    assert row.startswith("| MobileNetV3Small |") and float(row.split("|")[-2]) > 0
    assert BorrowsInputRange.integer_input is shipped
