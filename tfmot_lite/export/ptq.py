"""Post-training quantization: one function, five modes.

`quantize_post_training(model, mode, representative_data=None,
int8_io=False, path=None)` strips any tfmot-lite wrapper, then converts with
the TFLite converter settings of the TensorFlow post-training quantization
guide:

=================  ==========================================================
mode               converter settings and what the .tflite holds
=================  ==========================================================
"float32"          none: float weights and activations (the baseline).
"dynamic_range"    `Optimize.DEFAULT`: weights int8 (per channel for
                   convolutions), activations float, quantized on the fly.
"float16"          `Optimize.DEFAULT`, `supported_types=[float16]`: weights
                   stored float16, dequantized to float32 at load.
"int8"             `Optimize.DEFAULT`, calibrated on `representative_data`,
                   `TFLITE_BUILTINS_INT8` only: weights and activations int8;
                   `int8_io=True` also makes the interface int8.
"int16x8"          `Optimize.DEFAULT`, calibrated, `EXPERIMENTAL_TFLITE_
                   BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8`: int16
                   activations, int8 weights; `int8_io=True` gives an int16
                   interface (the integer type of its activations).
=================  ==========================================================

Calibration runs the float model on each representative sample, one at a
time: a few hundred samples that look like deployment inputs are enough.
"""

import numpy as np

from tfmot_lite.export.recurrent import warn_gru_16x8
from tfmot_lite.export.convert import (
    check_keras_model,
    check_representative_data,
    to_tflite,
)
from tfmot_lite.export.strip import is_qat, strip_for_export

MODES = ("float32", "dynamic_range", "float16", "int8", "int16x8")
CALIBRATED = ("int8", "int16x8")


def check_mode(mode, argument="mode"):
    if mode not in MODES:
        raise ValueError(
            f"Unknown `{argument}` {mode!r}; choose one of: {', '.join(MODES)}."
        )


def converter_settings(mode, int8_io=False):
    """The `to_tflite` keyword arguments of a post-training `mode`."""
    from tfmot_lite.quiet import import_tensorflow

    check_mode(mode)
    tf = import_tensorflow()
    if mode == "float32":
        return {}
    settings = {"optimizations": [tf.lite.Optimize.DEFAULT]}
    if mode == "float16":
        settings["supported_types"] = [tf.float16]
    elif mode == "int8":
        settings["supported_ops"] = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            settings["inference_input_type"] = tf.int8
            settings["inference_output_type"] = tf.int8
    elif mode == "int16x8":
        settings["supported_ops"] = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
        if int8_io:
            settings["inference_input_type"] = tf.int16
            settings["inference_output_type"] = tf.int16
    return settings


def quantize_post_training(
    model, mode, representative_data=None, int8_io=False, path=None
):
    """Quantizes a trained Keras model after training; returns .tflite bytes.

    Args:
      model: a Keras model; pruning, clustering and annotation wrappers are
        stripped first (on a copy). A quantization-aware-trained model is
        already quantized: export it with `export_model` (mode "int8").
      mode: "float32", "dynamic_range", "float16", "int8" (full integer) or
        "int16x8" (int16 activations, int8 weights). See the module table.
      representative_data: for "int8" and "int16x8", a NumPy array of model
        inputs (batch first) to calibrate activation ranges on; a list of
        arrays, one per input, for a model with several inputs.
      int8_io: with "int8", an int8 input and output instead of float (with
        "int16x8", int16).
      path: if given, the .tflite bytes are also written there.

    Returns:
      The .tflite flatbuffer as `bytes`.

    Raises:
      ValueError: before any conversion, for a model that is not Keras (a
        path to a .keras file included), an unknown mode, a calibrated mode
        without representative data, or data that does not fit the model.
    """
    check_keras_model(model)
    check_mode(mode)
    if mode in CALIBRATED:
        if representative_data is None:
            raise ValueError(
                f"mode {mode!r} (full integer) needs `representative_data`: a NumPy "
                "array of a few hundred typical model inputs to calibrate "
                "activation ranges. Use mode='dynamic_range' to quantize without it."
            )
        representative_data = check_representative_data(model, representative_data)
    else:
        representative_data = None
    if is_qat(model):
        raise ValueError(
            f"Model '{model.name}' was trained with quantization-aware training; "
            "it is converted from its own fake-quant ranges, not post-training "
            "quantized. Use tfmot_lite.export.export_model(model, mode='int8')."
        )
    if int8_io and mode not in CALIBRATED:
        raise ValueError(
            f"`int8_io=True` needs a full-integer mode ('int8' or 'int16x8'); "
            f"mode {mode!r} keeps float activations."
        )
    plain = strip_for_export(model)
    if mode == "int16x8":
        warn_gru_16x8(plain)
    return to_tflite(
        plain,
        representative_data=representative_data,
        path=path,
        **converter_settings(mode, int8_io),
    )


def calibration_samples(x, count=200, seed=0):
    """`count` inputs drawn from `x` without replacement: representative data."""
    x = np.asarray(x)
    if len(x) <= count:
        return x
    index = np.random.default_rng(seed).choice(len(x), size=count, replace=False)
    return x[np.sort(index)]
