"""Keras model -> .tflite bytes with the stock TFLite converter.

`check_keras_model` is the one gate every export entry point passes a model
through: a path, a string or any other object gets a ValueError saying how to
load a Keras model, before TensorFlow is touched.
"""

import contextlib
import io
import os

import numpy as np

from tfmot_lite.atomic_file import write_bytes_atomic
from tfmot_lite.quiet import import_tensorflow, silenced_stderr


def check_keras_model(model, argument="model"):
    """Raises a ValueError unless `model` is a built Keras model."""
    import keras

    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        raise ValueError(
            f"`{argument}` is the path '{path}', not a Keras model: load it first "
            f"with `keras.models.load_model('{path}')` (or use the `tfmot-lite "
            "export` command, which takes a .keras file)."
        )
    if not isinstance(model, keras.Model):
        raise ValueError(
            f"`{argument}` must be a Keras model (keras.Model); got "
            f"{type(model).__name__}. Build or load the model with Keras 3 first."
        )
    if not model.built or not getattr(model, "inputs", None):
        raise ValueError(
            f"`{argument}` ('{model.name}') has no defined inputs: build it with an "
            "`keras.Input` (Functional or Sequential with Input) before exporting."
        )


def check_representative_data(model, data, argument="representative_data"):
    """Returns `data` as float32 (int32 for an input of integer ids) after
    checking it fits the model's input; for a model with several inputs,
    `data` is a list of such arrays, one per input in `model.inputs` order,
    with the same number of examples."""
    if isinstance(data, (str, os.PathLike)):
        raise ValueError(
            f"`{argument}` is the path '{os.fspath(data)}': load it with "
            "`numpy.load` and pass the array."
        )
    if len(model.inputs) == 1:
        return _check_input_batch(model, model.inputs[0], data, argument)
    names = [t.name for t in model.inputs]
    if not isinstance(data, (list, tuple)) or len(data) != len(names):
        raise ValueError(
            f"`{argument}`: the model '{model.name}' has {len(names)} inputs "
            f"({', '.join(names)}); give a list of {len(names)} arrays, one per "
            "input in that order."
        )
    arrays = [
        _check_input_batch(model, t, d, f"{argument}[{i}] ({t.name})")
        for i, (t, d) in enumerate(zip(model.inputs, data))
    ]
    if len({len(a) for a in arrays}) != 1:
        raise ValueError(
            f"`{argument}`: the arrays of the {len(arrays)} inputs hold different "
            f"numbers of examples ({', '.join(str(len(a)) for a in arrays)})."
        )
    return arrays


def _check_input_batch(model, model_input, data, argument):
    dtype = np.dtype(model_input.dtype)
    dtype = dtype if np.issubdtype(dtype, np.integer) else np.dtype(np.float32)
    try:
        array = np.asarray(data, dtype=dtype)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"`{argument}` must be a NumPy array of model inputs; could not read "
            f"it as {dtype} ({error})."
        ) from None
    expected = tuple(model_input.shape[1:])
    if array.ndim != len(expected) + 1 or not len(array):
        raise ValueError(
            f"`{argument}` has shape {array.shape}; expected a non-empty batch of "
            f"inputs shaped (N, {', '.join(map(str, expected))})."
        )
    mismatch = [
        (a, e) for a, e in zip(array.shape[1:], expected) if e is not None and a != e
    ]
    if mismatch:
        raise ValueError(
            f"`{argument}` has shape {array.shape}; the model '{model.name}' takes "
            f"inputs shaped (N, {', '.join(map(str, expected))})."
        )
    if not np.all(np.isfinite(array)):
        raise ValueError(f"`{argument}` contains NaN or infinite values.")
    return array


def to_tflite(
    model,
    optimizations=(),
    representative_data=None,
    inference_input_type=None,
    inference_output_type=None,
    path=None,
    supported_types=None,
    supported_ops=None,
):
    """Converts a Keras 3 model with `tf.lite.TFLiteConverter.from_keras_model`.

    Args:
      model: a Keras model (strip optimization wrappers first where the
        technique needs it; QAT models convert as they are).
      optimizations: `tf.lite.Optimize` values, e.g. `[Optimize.DEFAULT]` for
        int8, `[Optimize.EXPERIMENTAL_SPARSITY]` to store sparse weights.
      representative_data: an array of inputs (batch first) for
        post-training calibration, one sample per converter step; for a
        model with several inputs, a list of such arrays, one per input.
      inference_input_type, inference_output_type: e.g. `tf.int8` for a
        fully integer interface.
      path: if given, the bytes are also written there (atomically: the file
        is either the whole model or left as it was).
      supported_types: `converter.target_spec.supported_types`, e.g.
        `[tf.float16]`.
      supported_ops: `converter.target_spec.supported_ops`, e.g.
        `[tf.lite.OpsSet.TFLITE_BUILTINS_INT8]`.

    Returns:
      The flatbuffer as `bytes`.

    Raises:
      ValueError: if `model` is not a Keras model (a path to a .keras file,
        say), before TensorFlow is involved.
    """
    check_keras_model(model)
    tf = import_tensorflow()

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = list(optimizations)
    if representative_data is not None:
        several = len(model.inputs) > 1
        columns = list(representative_data) if several else [representative_data]
        # Integer inputs (token ids) are calibrated as integers.
        dtypes = [tf.as_dtype(t.dtype) for t in model.inputs]
        dtypes = [d if d.is_integer else tf.float32 for d in dtypes]

        # Keyed by input name: the converted model's input order need not
        # be Keras' (a list would be fed in the converter's order).
        names = [t.name for t in model.inputs]

        def representative_dataset():
            for samples in zip(*columns):
                batch = [tf.cast(tf.expand_dims(s, 0), d) for s, d in zip(samples, dtypes)]
                yield dict(zip(names, batch)) if several else batch

        converter.representative_dataset = representative_dataset
    if inference_input_type is not None:
        converter.inference_input_type = inference_input_type
    if inference_output_type is not None:
        converter.inference_output_type = inference_output_type
    if supported_types is not None:
        converter.target_spec.supported_types = list(supported_types)
    if supported_ops is not None:
        converter.target_spec.supported_ops = list(supported_ops)
    # The converter prints the SavedModel signature it traces (stdout) and
    # calibration statistics (native stderr); keep the caller's output readable.
    with contextlib.redirect_stdout(io.StringIO()), silenced_stderr():
        flatbuffer = converter.convert()
    if path is not None:
        write_bytes_atomic(path, flatbuffer)
    return flatbuffer
