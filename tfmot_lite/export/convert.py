"""Keras model -> .tflite bytes with the stock TFLite converter."""

import contextlib
import io


def to_tflite(
    model,
    optimizations=(),
    representative_data=None,
    inference_input_type=None,
    inference_output_type=None,
    path=None,
):
    """Converts a Keras 3 model with `tf.lite.TFLiteConverter.from_keras_model`.

    Args:
      model: a Keras model (strip optimization wrappers first where the
        technique needs it; QAT models convert as they are).
      optimizations: `tf.lite.Optimize` values, e.g. `[Optimize.DEFAULT]` for
        int8, `[Optimize.EXPERIMENTAL_SPARSITY]` to store sparse weights.
      representative_data: an array (or iterable of batches) of inputs for
        post-training calibration; one sample per converter step.
      inference_input_type, inference_output_type: e.g. `tf.int8` for a
        fully integer interface.
      path: if given, the bytes are also written there.

    Returns:
      The flatbuffer as `bytes`.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = list(optimizations)
    if representative_data is not None:
        samples = representative_data

        def representative_dataset():
            for sample in samples:
                yield [tf.cast(tf.expand_dims(sample, 0), tf.float32)]

        converter.representative_dataset = representative_dataset
    if inference_input_type is not None:
        converter.inference_input_type = inference_input_type
    if inference_output_type is not None:
        converter.inference_output_type = inference_output_type
    # The converter prints the SavedModel signature it traces; keep the
    # caller's output readable.
    with contextlib.redirect_stdout(io.StringIO()):
        flatbuffer = converter.convert()
    if path is not None:
        with open(path, "wb") as f:
            f.write(flatbuffer)
    return flatbuffer
