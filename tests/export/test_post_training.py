"""quantize_post_training: every mode converts, runs in LiteRT and keeps the
float model's accuracy on the digits CNN; bad input fails before conversion."""

import keras
import numpy as np
import pytest

from tfmot_lite import export
from tfmot_lite.example_models import build_cnn
from tfmot_lite.export.ptq import calibration_samples
from tfmot_lite.sparsity import keras as sparsity


@pytest.fixture(scope="module")
def trained(digits32):
    keras.utils.set_random_seed(0)
    (x, y), (xt, yt) = digits32
    model = build_cnn()
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x, y, batch_size=32, epochs=4, verbose=0)
    return model, calibration_samples(x, 100), (xt, yt)


def _io_dtypes(flatbuffer):
    runner = export.TFLiteModel(flatbuffer)
    return runner.input["dtype"], runner.output["dtype"]


SLOW = pytest.mark.slow  # each mode converts and runs the digits test set


@pytest.mark.parametrize("mode, int8_io, tolerance, io", [
    pytest.param("float32", False, 0.0, np.float32, marks=SLOW),
    pytest.param("dynamic_range", False, 0.02, np.float32, marks=SLOW),
    pytest.param("float16", False, 0.02, np.float32, marks=SLOW),
    pytest.param("int8", False, 0.02, np.float32, marks=SLOW),
    pytest.param("int8", True, 0.02, np.int8, marks=SLOW),
    pytest.param("int16x8", False, 0.005, np.float32, marks=SLOW),
])
def test_every_mode_runs_in_litert_close_to_float(trained, mode, int8_io, tolerance, io):
    model, representative, (xt, yt) = trained
    float_accuracy = float(np.mean(model.predict(xt, verbose=0).argmax(-1) == yt))
    assert float_accuracy > 0.6  # A trained model, so the comparison means something.
    calibrate = representative if mode in ("int8", "int16x8") else None
    flatbuffer = export.quantize_post_training(model, mode, calibrate, int8_io=int8_io)
    accuracy = export.TFLiteModel(flatbuffer).accuracy(xt, yt)
    assert abs(accuracy - float_accuracy) <= tolerance + 1e-9
    assert _io_dtypes(flatbuffer) == (io, io)
    stored = {s.dtype for s in export.weight_stats(flatbuffer)}
    if mode == "dynamic_range":  # Tensors under 1,024 weights stay float.
        assert "int8" in stored
    else:
        assert stored == {
            "float32": {"float32"}, "float16": {"float16"},
            "int8": {"int8"}, "int16x8": {"int8"},
        }[mode]


def test_wrappers_are_stripped_and_the_file_is_written(digits32, tmp_path):
    # Any CNN will do: the test reads the zeros the mask leaves in the file.
    keras.utils.set_random_seed(0)
    model, representative = build_cnn(), calibration_samples(digits32[0][0], 100)
    pruned = sparsity.prune_low_magnitude(
        model, pruning_schedule=sparsity.ConstantSparsity(0.5, 0, frequency=1))
    pruned.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    labels = model.predict(representative, verbose=0).argmax(-1)
    pruned.fit(representative, labels, batch_size=100, epochs=1, verbose=0,
               callbacks=[sparsity.UpdatePruningStep()])
    path = tmp_path / "pruned.tflite"
    flatbuffer = export.quantize_post_training(pruned, "float32", path=str(path))
    assert path.read_bytes() == flatbuffer
    # The mask (50% zeros) is baked in; no wrapper variables reach the file.
    kernels = [s for s in export.weight_stats(flatbuffer) if s.op_type == "CONV_2D"]
    assert kernels and all(s.zero_fraction >= 0.49 for s in kernels)


@pytest.mark.parametrize("kwargs, message", [
    ({"mode": "int8"}, "needs `representative_data`"),
    ({"mode": "int16x8"}, "needs `representative_data`"),
    ({"mode": "int4"}, "Unknown `mode` 'int4'"),
    ({"mode": "float16", "int8_io": True}, "int8_io"),
    ({"mode": "int8", "representative_data": np.zeros((4, 8, 8, 3))}, r"shape \(4, 8, 8, 3\)"),
])
def test_bad_arguments_fail_before_conversion(kwargs, message):
    with pytest.raises(ValueError, match=message):
        export.quantize_post_training(build_cnn(), **kwargs)


@pytest.mark.parametrize("model, message", [
    ("model.keras", "path 'model.keras'.*keras.models.load_model"),
    (object(), "must be a Keras model"),
    (None, "must be a Keras model"),
])
def test_not_a_keras_model(model, message):
    with pytest.raises(ValueError, match=message):
        export.quantize_post_training(model, "float32")
    with pytest.raises(ValueError, match=message):
        export.to_tflite(model)


def test_a_model_whose_training_diverged_is_named_not_converted(tmp_path):
    """A NaN range would crash the converter (SIGSEGV on ConvNeXtTiny's QAT
    model); a NaN weight would be written into the file. Both are refused
    before conversion, naming the variables, and nothing is written."""
    import tfmot_lite as tfmot

    qat = tfmot.quantization.keras.quantize_model(build_cnn())
    qat(np.random.default_rng(0).normal(size=(4, 32, 32, 3)).astype("float32"), training=True)
    ranges = [v for v in qat.variables if v.path.endswith("_max")]
    ranges[0].assign(float("nan"))
    path = tmp_path / "m.tflite"
    with pytest.raises(ValueError, match=f"'{ranges[0].path}'.*Training diverged"):
        export.export_model(qat, "int8", path=path)
    assert not path.exists()
