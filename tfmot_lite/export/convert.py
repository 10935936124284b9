"""Keras model -> .tflite bytes with the stock TFLite converter.

`check_keras_model` is the one gate every export entry point passes a model
through: a path, a string or any other object gets a ValueError saying how to
load a Keras model, before TensorFlow is touched, and a model whose training
diverged (NaN or infinite variables) gets one naming them.
"""

import contextlib
import gc
import io
import os
import tempfile
from collections.abc import Mapping

import numpy as np

from tfmot_lite.atomic_file import write_bytes_atomic
from tfmot_lite.export.degenerate import check_ranges
from tfmot_lite.export.recurrent import unrolled_for_export
from tfmot_lite.quiet import import_tensorflow, silenced_stderr
from tfmot_lite.quantization.quantizers import converter_trace


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
    check_finite_variables(model, argument)


def check_finite_variables(model, argument="model"):
    """Raises a ValueError naming the variables of `model` that hold NaN or
    infinity (training diverged). The converter would write them into the
    .tflite, or crash the process on a NaN quantization range."""
    import keras

    bad = [v.path for v in model.variables
           if keras.backend.is_float_dtype(v.dtype)
           and not np.isfinite(keras.ops.convert_to_numpy(v)).all()]
    if bad:
        listed = ", ".join(f"'{path}'" for path in bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise ValueError(
            f"`{argument}` ('{model.name}') holds NaN or infinite values in {len(bad)} "
            f"variable(s): {listed}. Training diverged (a learning rate too large, or "
            "NaN in the data); export the model from before it diverged, or retrain."
        )


def input_names(model):
    """The names of the model's inputs, in `model.inputs` order: the keys of
    data given by name, and the input names of the converted model."""
    return [t.name for t in model.inputs]


def has_dict_io(model):
    """Whether the model takes or returns a dict (KerasHub models do): the
    TFLite converter cannot trace those from the Keras model itself."""
    return any(
        isinstance(getattr(model, attribute, None), dict)
        for attribute in ("_inputs_struct", "_outputs_struct")
    )


def inputs_by_name(model, data, argument="data"):
    """`data` for a model with several inputs, as a dict {input name: data}
    in `model.inputs` order. `data` is such a dict (any order), or a list
    with one entry per input in `model.inputs` order. Raises a ValueError
    naming the missing and extra names when a dict does not fit."""
    names = input_names(model)
    if isinstance(data, Mapping):
        missing = [n for n in names if n not in data]
        extra = sorted(str(k) for k in data if k not in names)
        if missing or extra:
            problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
                [f"extra {', '.join(extra)}"] if extra else [])
            raise ValueError(
                f"`{argument}`: the model '{model.name}' takes inputs named "
                f"{', '.join(names)}; the names given do not match "
                f"({'; '.join(problems)})."
            )
        return {n: data[n] for n in names}
    if not isinstance(data, (list, tuple)) or len(data) != len(names):
        raise ValueError(
            f"`{argument}`: the model '{model.name}' has {len(names)} inputs "
            f"({', '.join(names)}); give a dict of arrays keyed by those names, "
            f"or a list of {len(names)} arrays, one per input in that order."
        )
    return dict(zip(names, data))


def count_examples(data):
    """The number of examples in a batch of inputs: an array, or a dict of
    arrays (one per input, all of that length)."""
    if isinstance(data, Mapping):
        data = next(iter(data.values()))
    return len(data)


def check_representative_data(model, data, argument="representative_data"):
    """Returns `data` as float32 (int32 for an input of integer ids) after
    checking it fits the model's input. For a model with several inputs,
    `data` is a dict of such arrays keyed by input name, or a list of them
    in `model.inputs` order, all with the same number of examples; the
    result is then a dict {input name: array} in `model.inputs` order."""
    if isinstance(data, (str, os.PathLike)):
        raise ValueError(
            f"`{argument}` is the path '{os.fspath(data)}': load it with "
            "`numpy.load` and pass the array."
        )
    if len(model.inputs) == 1:
        if isinstance(data, Mapping):
            data = inputs_by_name(model, data, argument)[model.inputs[0].name]
        return _check_input_batch(model, model.inputs[0], data, argument)
    given_as_dict = isinstance(data, Mapping)
    columns = inputs_by_name(model, data, argument)
    arrays = {
        name: _check_input_batch(
            model, t, columns[name],
            f"{argument}['{name}']" if given_as_dict else f"{argument}[{i}] ({name})")
        for i, (name, t) in enumerate(zip(columns, model.inputs))
    }
    if len({len(a) for a in arrays.values()}) != 1:
        raise ValueError(
            f"`{argument}`: the arrays of the {len(arrays)} inputs hold different "
            "numbers of examples ("
            + ", ".join(f"{n}: {len(a)}" for n, a in arrays.items()) + ")."
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
    per_tensor_dense=False,
):
    """Converts a Keras 3 model to a .tflite flatbuffer.

    The model is written as a SavedModel in a temporary directory (removed
    afterwards) and converted with `TFLiteConverter.from_saved_model`
    (`from_keras_model` cannot trace Keras 3 models with dict inputs or
    outputs, e.g. KerasHub models): its inference call with the variables
    frozen into constants where it can (`_write_saved_model`: faster),
    else through `model.export`. Either way the .tflite's
    `serving_default` signature names its inputs as the model does.

    Args:
      model: a Keras model (strip optimization wrappers first where the
        technique needs it; QAT models convert as they are).
      optimizations: `tf.lite.Optimize` values, e.g. `[Optimize.DEFAULT]` for
        int8, `[Optimize.EXPERIMENTAL_SPARSITY]` to store sparse weights.
      representative_data: an array of inputs (batch first) for
        post-training calibration, one sample per converter step; for a
        model with several inputs, a dict of such arrays keyed by input
        name, or a list of them in `model.inputs` order.
      inference_input_type, inference_output_type: e.g. `tf.int8` for a
        fully integer interface.
      path: if given, the bytes are also written there (atomically: the file
        is either the whole model or left as it was).
      supported_types: `converter.target_spec.supported_types`, e.g.
        `[tf.float16]`.
      supported_ops: `converter.target_spec.supported_ops`, e.g.
        `[tf.lite.OpsSet.TFLITE_BUILTINS_INT8]`.
      per_tensor_dense: calibrated modes quantize FULLY_CONNECTED weights
        with one scale per tensor (as QAT's Dense), not per output channel.

    Returns:
      The flatbuffer as `bytes`.

    Raises:
      ValueError: if `model` is not a Keras model (a path to a .keras file,
        say), before TensorFlow is involved.
    """
    check_keras_model(model)
    tf = import_tensorflow()
    model = unrolled_for_export(model)  # Keras 3 RNNs convert only unrolled.

    # The converter prints the SavedModel signature it traces (stdout) and
    # calibration statistics (native stderr); keep the caller's output readable.
    with contextlib.ExitStack() as stack:
        stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        stack.enter_context(silenced_stderr())
        # Removed when the block ends, on success or error; the converter
        # reads the directory until `convert()` returns.
        directory = stack.enter_context(
            tempfile.TemporaryDirectory(prefix="tfmot_lite_export_"))
        with converter_trace():  # the ops the converter reads, no simulation
            _write_saved_model(tf, model, directory)
        converter = tf.lite.TFLiteConverter.from_saved_model(directory)
        converter.optimizations = list(optimizations)
        if representative_data is not None:
            converter.representative_dataset = _representative_dataset(
                tf, model, representative_data)
        if inference_input_type is not None:
            converter.inference_input_type = inference_input_type
        if inference_output_type is not None:
            converter.inference_output_type = inference_output_type
        if supported_types is not None:
            converter.target_spec.supported_types = list(supported_types)
        if supported_ops is not None:
            converter.target_spec.supported_ops = list(supported_ops)
        if per_tensor_dense:
            converter._experimental_disable_per_channel_quantization_for_dense_layers = True
        with objects_before_frozen():
            flatbuffer = converter.convert()
    if optimizations:  # integer ranges (calibrated, or QAT's): XNNPACK can run them
        check_ranges(flatbuffer)
    if path is not None:
        write_bytes_atomic(path, flatbuffer)
    return flatbuffer


@contextlib.contextmanager
def objects_before_frozen():
    """Within the block, the garbage collector leaves alone the objects that
    existed when it began (`gc.freeze`), and looks at them again afterwards.

    `TFLiteConverter.convert` calls `gc.collect()` once the SavedModel is
    loaded, to free the loaded copy before converting. A full collection
    walks every object of the process: in a process that has built many
    models (a notebook, a test run, a sweep over models) that took 0.3 s of
    a 0.7 s conversion. With the older objects frozen the collection still
    frees what the conversion made, and the rest is collected as usual
    after the block. A process that froze objects itself (a server before
    it forks, a test harness) keeps its freeze as it was: the block then
    changes nothing (Python cannot unfreeze only the objects it froze)."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


# Weights above this many bytes are not frozen into the SavedModel's graph
# (`_write_saved_model`): each copy of a constant-laden graph costs their
# size again.
FREEZE_MAX_BYTES = 64 * 2**20


def weight_bytes(model):
    """Bytes of `model`'s variables, as stored."""
    import keras

    return sum(int(np.prod(v.shape)) * np.dtype(keras.backend.standardize_dtype(v.dtype)).itemsize
               for v in model.variables)


def _write_saved_model(tf, model, directory):
    """Writes `model`'s inference call as a SavedModel in `directory`, with
    one `serving_default` signature: inputs named as the Keras inputs (batch
    size free), outputs `output_0`, `output_1`, ... as Keras' own export.

    A Sequential or Functional model of up to `FREEZE_MAX_BYTES` of weights
    is written with its variables frozen into constants (`_frozen_call`),
    whatever it holds (KerasHub backbones, a user's subclassed blocks) and
    whatever its inputs and outputs (a list, a dict).
    `model.export` (and `TFLiteConverter.from_keras_model`, which calls it)
    saves and restores every variable through traced checkpoint functions,
    which costs time per variable: a QAT MobileNetV3Small converts in 6.3 s
    this way against 21.1 s, to the same operators and outputs
    (benchmarks/export_speed.py). Freezing costs memory per weight byte
    instead: the constants are copied by every graph built on the way and
    again by the converter. A QAT ResNet50 (95 MB of weights) peaked 2.0 GB
    above the model writing the frozen SavedModel and 2.2 GB converting it,
    against 0.2 and 0.6 GB through `model.export`, which was also faster
    there (18 s against 25 s). So larger models, and graphs whose state
    cannot be frozen (lookup tables), take `model.export`."""
    from tfmot_lite.core.graph import is_graph_model
    from tfmot_lite.export.static_shapes import batch_free_shapes

    call = None
    with batch_free_shapes(tf):  # constant reshapes: one XNNPACK partition
        if is_graph_model(model) and weight_bytes(model) <= FREEZE_MAX_BYTES:
            call = _frozen_call(tf, model)
        if call is None:
            model.export(directory, format="tf_saved_model", verbose=False)
            return
    module = tf.Module()
    module.serving_default = call
    # Inference only: no custom gradients (Keras' swish has one).
    tf.saved_model.save(
        module, directory, signatures={"serving_default": call.get_concrete_function()},
        options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))


def _frozen_call(tf, model):
    """`model(inputs, training=False)` traced once with its variables as
    constants, as a `tf.function` of the inputs returning a dict of
    outputs, with the signature Keras' own export gives (`model.export`):
    inputs named as the Keras inputs (a dict of inputs too, whatever its
    keys), outputs `output_0`, `output_1`, ... (a dict of outputs by its
    keys). None when the graph's state cannot be frozen."""
    from tensorflow.python.framework import convert_to_constants

    structure = getattr(model, "_inputs_struct", None)
    if isinstance(structure, dict):
        signature = [{key: tf.TensorSpec(t.shape, t.dtype, name=t.name)
                      for key, t in structure.items()}]
    else:
        specs = [tf.TensorSpec(t.shape, t.dtype, name=t.name) for t in model.inputs]
        # One input is passed as itself, several as one list (Keras' export).
        signature = specs if len(specs) == 1 else [specs]

    @tf.function(input_signature=signature, autograph=False)
    def call(inputs):
        return model(inputs, training=False)

    concrete = call.get_concrete_function()
    try:
        graph_def, feeds = _frozen_graph_def(concrete)
    except AttributeError:  # TensorFlow moved the pieces: its public function
        try:
            frozen = convert_to_constants.convert_variables_to_constants_v2(
                concrete, lower_control_flow=False)
        except (ValueError, TypeError, NotImplementedError):
            return None
        graph_def, feeds = frozen.graph.as_graph_def(), [t.name for t in frozen.inputs]
    except (ValueError, TypeError, NotImplementedError):
        return None
    fetches = [t.name for t in concrete.outputs]
    # The traced inputs, in the order `tf.nest` flattens the signature.
    flat_specs = tf.nest.flatten(signature)
    constant_call = tf.compat.v1.wrap_function(
        lambda *inputs: tf.graph_util.import_graph_def(
            graph_def, input_map=dict(zip(feeds, inputs)), return_elements=fetches,
            name=""),  # the traced names, which the .tflite's tensors keep
        flat_specs)
    outputs = concrete.structured_outputs

    def serve(inputs):
        results = constant_call(*tf.nest.flatten(inputs))
        if isinstance(outputs, dict):
            return tf.nest.pack_sequence_as(outputs, results)
        return {f"output_{i}": out for i, out in enumerate(results)}

    if isinstance(structure, dict):
        return tf.function(serve, input_signature=signature, autograph=False)
    return tf.function(lambda *inputs: serve(list(inputs)), input_signature=flat_specs,
                       autograph=False)


def _frozen_graph_def(concrete):
    """`(graph_def, feeds)`: `concrete`'s graph with its variables as
    constants, and the names of the inputs it still takes, as
    `convert_variables_to_constants_v2` computes them, without the
    ConcreteFunction it then rebuilds from the GraphDef (which
    `_frozen_call` does not use: it imports the GraphDef itself). That
    rebuild copies every op into a new graph in Python, one by one: about
    a third of the export of a QAT DenseNet121 (7,321 ops). The library's
    functions, rewritten, replace the eager context's old ones as there."""
    from tensorflow.python.eager import context
    from tensorflow.python.framework import convert_to_constants
    from tensorflow.python.util import object_identity

    data = convert_to_constants._FunctionConverterDataInEager(
        func=concrete, lower_control_flow=False, aggressive_inlining=False)
    graph_def, converted = convert_to_constants._replace_variables_by_constants(
        converter_data=data)
    captures = concrete.graph.internal_captures
    frozen = object_identity.ObjectIdentitySet(captures[i] for i in converted)
    for function in graph_def.library.function:
        if context.context().has_function(function.signature.name):
            context.context().remove_function(function.signature.name)
    return graph_def, [t.name for t in concrete.inputs if t not in frozen]


def _representative_dataset(tf, model, data):
    """The converter's `representative_dataset`: a generator function giving
    one example (batch of 1) per step. It yields a dict keyed by input name
    for a model with several inputs or dict inputs (the converted model's
    input order need not be Keras'), else a one-element list."""
    by_name = len(model.inputs) > 1 or has_dict_io(model)
    if len(model.inputs) > 1:
        columns = inputs_by_name(model, data, "representative_data")
    else:
        if isinstance(data, Mapping):
            data = inputs_by_name(model, data, "representative_data")[model.inputs[0].name]
        columns = {model.inputs[0].name: data}
    # Integer inputs (token ids) are calibrated as integers.
    dtypes = [tf.as_dtype(t.dtype) for t in model.inputs]
    dtypes = [d if d.is_integer else tf.float32 for d in dtypes]

    def representative_dataset():
        for samples in zip(*columns.values()):
            batch = [tf.cast(tf.expand_dims(s, 0), d) for s, d in zip(samples, dtypes)]
            yield dict(zip(columns, batch)) if by_name else batch

    return representative_dataset
