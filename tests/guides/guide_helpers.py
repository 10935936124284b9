"""Shared pieces of the guide tests: the guides' helpers, written for Keras 3.

Each `test_guide_*.py` module follows one official tfmot guide
(tensorflow/model-optimization, `g3doc/guide/`) with `import tfmot_lite as
tfmot` and `import keras`, on the bundled digits instead of MNIST, with
smaller models and fewer steps. Where a guide's numbers only make sense at
MNIST scale (a mask update every 100 steps), the test says what it changed.
"""

import io
import os
import tempfile
import zipfile

import keras
import numpy as np

from tfmot_lite import data


def digits_28x28_stand_in(size=16, train=None):
    """The digits as the guides use MNIST: `(x, y), (x_test, y_test)` with
    images of shape `(size, size)` in [0, 1] and integer labels."""
    (x, y), (xt, yt) = data.digits(image_size=size, channels=1)
    x, xt = x[..., 0], xt[..., 0]
    if train is not None:
        x, y = x[:train], y[:train]
    return (x, y), (xt, yt)


def compile_for_digits(model, learning_rate=1e-3):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def gzipped_file_size(path):
    """The guides' `get_gzipped_model_size`: the file zipped with DEFLATE."""
    _, zipped = tempfile.mkstemp(".zip")
    with zipfile.ZipFile(zipped, "w", compression=zipfile.ZIP_DEFLATED) as f:
        f.write(path)
    size = os.path.getsize(zipped)
    os.remove(zipped)
    return size


def gzipped_keras_size(model, tmp_path, name):
    """Saves `model` as the guides do (`.h5`, no optimizer) and zips it."""
    path = str(tmp_path / f"{name}.h5")
    keras.models.save_model(model, path, include_optimizer=False)
    return gzipped_file_size(path)


def gzipped_bytes_size(flatbuffer, tmp_path, name):
    path = tmp_path / f"{name}.tflite"
    path.write_bytes(flatbuffer)
    return gzipped_file_size(str(path))


def summary_text(model):
    out = io.StringIO()
    model.summary(print_fn=lambda line, *a, **k: out.write(line + "\n"))
    return out.getvalue()


def total_params(model):
    """The 'Total params' count that `model.summary()` prints."""
    for line in summary_text(model).splitlines():
        if "Total params" in line:
            return int(line.split(":")[1].split("(")[0].strip().replace(",", ""))
    raise AssertionError("summary() printed no parameter count")


def tflite_accuracy(flatbuffer, x, y):
    """The guides' `evaluate_model`: one image at a time in the interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    inp = interpreter.get_input_details()[0]["index"]
    out = interpreter.get_output_details()[0]["index"]
    hits = 0
    for image, label in zip(x, y):
        interpreter.set_tensor(inp, np.expand_dims(image, 0).astype(np.float32))
        interpreter.invoke()
        hits += int(np.argmax(interpreter.get_tensor(out)[0]) == label)
    return hits / len(y)


def to_tflite(model, optimizations=()):
    """The guides' conversion: `TFLiteConverter.from_keras_model`."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = list(optimizations)
    return converter.convert()


def zero_fraction(weight):
    return float(np.mean(np.asarray(weight) == 0))
