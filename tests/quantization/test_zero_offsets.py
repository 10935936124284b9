"""A freshly initialised LayerNormalization (beta zero) or Dense over
positions (bias zero) exports.

Adding zeros is folded away by the converter, so the range before the add
and the range after it (tracked over values already on the first's grid)
met with scales a few ulps apart, and the converter refused the model at
the reshape after them (`'tfl.reshape' op quantization parameters violate
the same scale constraint`): the ConvNeXt-style blocks below, on every
seed tried. The trace for the converter now skips the range before an add
of zeros (`quantizers.added_for_nothing`); training and inference keep it.
A multiply by ones (a fresh LayerNorm's gamma) is folded the same way: a
whole freshly initialised ConvNeXtTiny at 32x32 was refused at a reshape
in its last stage (LayerNorm's normalized range against its output's) until
the trace skipped the range before it too (`multiplied_for_nothing`).
"""

import keras
import numpy as np
import pytest
from tflite_helpers import op_report, output_steps

import tfmot_lite as tfmot
from tfmot_lite import export
from tfmot_lite.quantization import quantizers as q

L = keras.layers


def _convnext_blocks(seed, blocks=2, dim=16):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = L.LayerNormalization(epsilon=1e-6)(L.Conv2D(dim, 2, strides=2)(inputs))
    for _ in range(blocks):
        r = x
        x = L.LayerNormalization(epsilon=1e-6)(L.DepthwiseConv2D(7, padding="same")(x))
        x = L.Dense(dim)(L.Activation("gelu")(L.Dense(4 * dim)(x)))
        x = L.Add()([r, x])
    return keras.Model(inputs, L.Dense(10)(L.GlobalAveragePooling2D()(x)))


def _x(n=16):
    return np.random.default_rng(0).uniform(0, 255, size=(n, 8, 8, 3)).astype("float32")


def _exported(model, x, path):
    """`model` quantized, its ranges set on `x` in batches of 4 (no weight
    update), exported int8 to `path`: the QAT model, and the .tflite's
    operators that touch float."""
    qat = tfmot.quantization.keras.quantize_model(model)
    for k in range(0, len(x), 4):
        qat(x[k:k + 4], training=True)
    export.export_model(qat, "int8", path=path, int8_io=True, latency_runs=1)
    return qat, op_report(path.read_bytes())[1]


# One seed in the fast tier; each export takes about 3.5 s.
@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow),
                                  pytest.param(2, marks=pytest.mark.slow)])
def test_a_fresh_convnext_block_exports_fully_integer_and_agrees(seed, tmp_path):
    x, path = _x(), tmp_path / "m.tflite"
    qat, float_ops = _exported(_convnext_blocks(seed), x, path)
    assert float_ops == []
    # Within what these blocks read when nothing is skipped: with random
    # gammas, betas and biases (every range kept), seeds 0-7 read 21-53% of
    # the logits a step off and at most 3 (4 calibration batches of noise
    # through LayerNorm and GELU); fresh, the ranges skipped: 19-53%, max 3.
    steps = output_steps(qat, path, x)
    assert np.mean(steps > 0.5) <= 0.6 and steps.max() <= 3.01, (
        np.mean(steps > 0.5), steps.max())


def test_only_the_converters_trace_skips_the_range():
    beta = keras.Variable(np.zeros(4, "float32"))
    assert not q.added_for_nothing(beta)  # training and inference keep it
    with q.converter_trace():
        assert q.added_for_nothing(beta)
        beta.assign(np.full(4, 0.1, "float32"))
        assert not q.added_for_nothing(beta)
        assert not q.added_for_nothing(None)


def test_only_the_converters_trace_skips_the_range_before_a_multiply_by_ones():
    gamma = keras.Variable(np.ones(4, "float32"))
    assert not q.multiplied_for_nothing(gamma)
    with q.converter_trace():
        assert q.multiplied_for_nothing(gamma)
        assert not q.added_for_nothing(gamma)
        gamma.assign(np.full(4, 1.01, "float32"))
        assert not q.multiplied_for_nothing(gamma)


def _convnext_stages(input_shape=(32, 32, 3)):
    """keras.applications' ConvNeXt with ConvNeXtTiny's stages (widths 96,
    192, 384 and 768, LayerScale, stem and downsampling LayerNorms) and one
    block in each instead of 3, 3, 9 and 3: every layer kind of
    ConvNeXtTiny at a quarter of its trace and export (the whole model is
    the model zoo's, benchmarks/model_zoo.py)."""
    from keras.src.applications.convnext import ConvNeXt

    return ConvNeXt(depths=[1, 1, 1, 1], projection_dims=[96, 192, 384, 768],
                    layer_scale_init_value=1e-6, default_size=224, name="convnext_stages",
                    weights=None, input_shape=input_shape, classes=10)


@pytest.mark.slow
def test_a_fresh_convnext_exports_fully_integer_and_agrees(tmp_path):
    # ConvNeXtTiny, seed 0, was refused before gamma's multiply by ones was
    # skipped (`'tfl.reshape' op quantization parameters violate the same
    # scale constraint` at stage 3, block 0: scales 0.0371928 vs
    # 0.0371926). With that skip switched off, neither ConvNeXtTiny (seed 0)
    # nor these stages (seeds 0-6) are refused any more (2026-12-07): this
    # guards the path end to end, the skip itself is tested above.
    keras.utils.set_random_seed(0)
    model = _convnext_stages()
    x = np.random.default_rng(0).uniform(0, 255, size=(12, 32, 32, 3)).astype("float32")
    path = tmp_path / "m.tflite"
    qat, float_ops = _exported(model, x, path)
    assert float_ops == []
    # Its softmax outputs, per image: cosine 0.997-0.9996 with the Keras
    # model's on seeds 0 and 3 (ConvNeXtTiny; XNNPACK; up to 10 steps of
    # 1/256 apart on a few outputs: one-step differences grown along the
    # blocks of a random model, so the steps are no steady measure here).
    from tfmot_lite.export.runtime import TFLiteModel

    lite = TFLiteModel(path.read_bytes()).predict(x)
    keras_out = keras.ops.convert_to_numpy(qat(x, training=False))
    cosine = np.sum(lite * keras_out, 1) / (
        np.linalg.norm(lite, axis=1) * np.linalg.norm(keras_out, axis=1))
    assert cosine.min() >= 0.99, cosine
    # Layer by layer, each on the .tflite's own inputs (XNNPACK): its
    # convolutions and Dense layers (no BatchNorm to fold here) land on the
    # .tflite's integers but for rounding ties.
    fidelity = export.layer_fidelity(qat, path.read_bytes(), x, examples=1)
    kernels = [r for r in fidelity.rows if r.local_share is not None and r.path.endswith(
        ("_conv", "_conv_1", "_conv_2", "_pointwise_conv_1", "_pointwise_conv_2"))]
    assert len(kernels) > 10 and max(r.local_share for r in kernels) <= 0.02, max(
        kernels, key=lambda r: r.local_share)
