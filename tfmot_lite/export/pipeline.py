"""`export_model`: one call from any tfmot-lite model to a .tflite file and
a verified `ExportReport`.

`export_model(model, mode, path, data, labels, threads)` strips the model
(pruning, clustering; QAT models keep their fake-quant ops), converts it,
writes the .tflite, then reads the file back and measures it:

* size: bytes raw and gzipped (what an over-the-air update downloads);
* operators: every operator type, and the fraction that run integer (of
  the operators handling data, those that touch no float tensor; the
  QUANTIZE/DEQUANTIZE of a float interface count as float);
* weights: zeros and unique values of every kernel (`weight_stats`), so a
  pruned model shows its zeros and a clustered one its few values per
  channel, as stored;
* the XNNPACK sparse-inference verdict (`inspect_tflite`);
* LiteRT latency: the median of repeated single-example runs, `threads`
  threads, XNNPACK as deployed;
* given `data`, top-1 agreement with the Keras model and, given `labels`,
  accuracy in Keras and in LiteRT;
* given `data` and a QAT model (or `fidelity=True`), the layer-by-layer
  comparison of `fidelity.py`: the first layer where the .tflite departs
  from the Keras model, and by how much.

How a report is shown (table, JSON, Markdown, PNG) is `report.py`'s part.
"""

import contextlib
import dataclasses
import os
import warnings

import numpy as np

from tfmot_lite.atomic_file import write_bytes_atomic
from tfmot_lite.distillation.distiller import student_of
from tfmot_lite.export.convert import (
    check_keras_model,
    check_representative_data,
    count_examples,
    input_names,
    to_tflite,
)
from tfmot_lite.export.fidelity import layer_fidelity
from tfmot_lite.export.inspect import inspect_tflite
from tfmot_lite.export.ptq import CALIBRATED, calibration_samples, check_mode, converter_settings
from tfmot_lite.export.report import ExportReport
from tfmot_lite.export.runtime import TFLiteModel, gzipped_size, measure_latency
from tfmot_lite.export.source import read_tflite
from tfmot_lite.export.sparse import verified_sparse
from tfmot_lite.export.strip import qat_mode, strip_for_export, techniques
from tfmot_lite.export.weights import KERNEL_OPS, weight_stats
from tfmot_lite.quantization.quantizers import float_activations

_DATA_TYPES = {np.dtype(t) for t in (np.float32, np.float16, np.int8, np.uint8, np.int16)}


def export_model(
    model,
    mode="float32",
    path=None,
    data=None,
    labels=None,
    threads=1,
    representative_data=None,
    int8_io=False,
    sparse=None,
    name=None,
    latency_runs=100,
    fidelity=None,
    fidelity_examples=4,
):
    """Strips, converts, writes and measures a tfmot-lite model.

    Args:
      model: a Keras model, plain or with tfmot-lite wrappers (pruning,
        clustering, QAT, or a combination); a distillation model
        (`tfmot_lite.distillation.distill`) exports its student, and the
        report lists "distillation" among the techniques. A QAT model
        exports as int8 from its own fake-quant ranges (mode "int8"); a 16x8
        QAT model (`Default16x8QuantizeScheme`) as "int16x8", from its
        trained weights with calibrated ranges (see the conversion below).
      mode: "float32", "dynamic_range", "float16", "int8" or "int16x8" (see
        `quantize_post_training`).
      path: where to write the .tflite (optional).
      data: NumPy inputs (batch first) to measure agreement (and accuracy
        with `labels`) on; its first example also drives the latency runs.
        For a model with several inputs, a dict of such arrays keyed by
        input name (or a list in `model.inputs` order).
      labels: integer class labels of `data`.
      threads: LiteRT threads for the latency and accuracy runs.
      representative_data: calibration inputs for "int8"/"int16x8" post-
        training quantization, given as `data` is; defaults to up to 200
        examples of `data`.
      int8_io: an integer interface (int8; int16 for "int16x8").
      sparse: store weights sparse (`Optimize.EXPERIMENTAL_SPARSITY`,
        float32 only, as XNNPACK's sparse kernels are float). None: when the
        model is pruned or its kernels are at least half zeros.
      name: the report's label (default: the techniques and mode).
      latency_runs: repeated runs the median latency is taken over; 0
        measures none (`report.latency_us` is None).
      fidelity: compare every layer of the Keras model with the .tflite's
        tensors on the first `fidelity_examples` examples of `data`
        (`export.layer_fidelity`) and store the result (a dict) in
        `report.fidelity`. None: for a QAT model given `data`; a failure
        there is then a warning, not an error.
      fidelity_examples: examples the layer comparison runs on.

    Returns:
      An `ExportReport`.

    Raises:
      ValueError: before conversion, for a model that is not Keras, an
        unknown mode, a mode the model cannot take, missing calibration
        data, or data/labels that do not fit the model.
    """
    # A distillation model exports its student (the teacher only trained it).
    distilled = student_of(model) is not model
    model = student_of(model)
    check_keras_model(model)
    check_mode(mode)
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"`threads` must be a positive integer; got {threads!r}.")
    check_latency_runs(latency_runs)
    found = sorted(techniques(model) | ({"distillation"} if distilled else set()))
    qat = "qat" in found
    if qat and mode != qat_mode(model):
        raise ValueError(
            f"Model '{model.name}' is quantization-aware trained for "
            f"{qat_mode(model)}: export it with mode={qat_mode(model)!r}, not {mode!r}."
        )
    if data is not None:
        if len(model.outputs) > 1:
            raise ValueError(
                f"`data` measures top-1 agreement and accuracy of a model with one "
                f"input and one output, or several inputs and one output; "
                f"'{model.name}' has {len(model.inputs)} input(s) and "
                f"{len(model.outputs)} output(s). Export it with data=None (and "
                "`representative_data`, a dict with one array per input name, for "
                "a calibrated mode)."
            )
        data = check_representative_data(model, data, "data")
        if labels is not None:
            labels = np.asarray(labels).reshape(-1)
            if len(labels) != count_examples(data):
                raise ValueError(
                    f"`labels` has {len(labels)} entries but `data` has "
                    f"{count_examples(data)} examples; give one label per example."
                )
    elif labels is not None:
        raise ValueError("`labels` were given without `data`; pass the inputs too.")
    # A 16x8 QAT model converts calibrated (see the conversion below).
    calibrated = mode in CALIBRATED and (not qat or mode == "int16x8")
    calibration = ""
    if calibrated:
        if representative_data is None and data is None:
            raise ValueError(
                f"mode {mode!r} (full integer) needs `representative_data` (or "
                "`data`) to calibrate activation ranges on."
            )
        if representative_data is None:
            representative_data = _calibration_samples(data, 200)
            calibration = f"{count_examples(representative_data)} examples of `data`"
        else:
            representative_data = check_representative_data(model, representative_data)
            calibration = f"{count_examples(representative_data)} representative examples"
    if int8_io and mode not in CALIBRATED:
        raise ValueError(f"`int8_io=True` needs mode 'int8' or 'int16x8'; got {mode!r}.")

    qat_16x8 = qat and mode == "int16x8"
    plain = model if qat_16x8 else strip_for_export(model)
    if sparse is None:
        sparse = mode == "float32" and not qat and (
            "pruning" in found or _kernel_zero_fraction(plain) >= 0.5)
    elif sparse and mode != "float32":
        raise ValueError(
            "`sparse=True` needs mode 'float32': XNNPACK's sparse kernels are float "
            f"and LiteRT cannot run sparse {mode} weights."
        )
    tf = _tf()
    if qat and mode == "int8":
        settings = {"optimizations": [tf.lite.Optimize.DEFAULT]}
        if int8_io:
            settings["inference_input_type"] = tf.int8
            settings["inference_output_type"] = tf.int8
    else:
        settings = converter_settings(mode, int8_io)
        if sparse:
            settings["optimizations"] = list(settings.get("optimizations", [])) + [
                tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    calibration_data = representative_data if calibrated else None
    with float_activations() if qat_16x8 else contextlib.nullcontext():
        # A 16x8 QAT model is converted as the converter's own 16x8 mode
        # converts a float model: its QAT path has no int16 GELU and stores
        # constant operands int8 beside int16 activations, and a stripped
        # model would hand it layer normalization's NEG, which its 16x8
        # mode refuses. So the converter traces the QAT model's own integer
        # ops (layer normalization and attention as `quantization/
        # layer_norm.py` and `attention.py` write them) and int8 weights,
        # with the activation fake-quant off (`float_activations`), and
        # calibrates their ranges; at 16 bits a calibrated range and the
        # trained one give steps within a few parts in 10^5 of its width.
        # Dense kernels keep the one int8 scale QAT rounded them to.
        flatbuffer = to_tflite(plain, representative_data=calibration_data,
                               per_tensor_dense=qat_16x8, **settings)
    if sparse:
        dense_settings = dict(settings, optimizations=[
            o for o in settings["optimizations"] if o != tf.lite.Optimize.EXPERIMENTAL_SPARSITY])
        flatbuffer, problem = verified_sparse(
            flatbuffer,
            lambda: to_tflite(plain, representative_data=calibration_data, **dense_settings),
            data)
        if problem:
            warnings.warn(problem, stacklevel=2)
    if path is not None:
        write_bytes_atomic(path, flatbuffer)
    report = measure(
        flatbuffer, data=data, labels=labels, keras_model=model, threads=threads,
        latency_runs=latency_runs,
    )
    report.name = name or "+".join(found + [mode])
    report.mode = mode
    report.path = None if path is None else os.fspath(path)
    report.techniques = found
    report.calibration = calibration
    if fidelity is None:
        fidelity = qat and data is not None
        required = False
    else:
        required = bool(fidelity)
    if fidelity:
        if data is None:
            raise ValueError("`fidelity=True` compares layers on `data`; pass `data` too.")
        try:
            report.fidelity = layer_fidelity(
                model, flatbuffer, data, examples=fidelity_examples).to_dict()
        except Exception as error:
            if required:
                raise
            warnings.warn(f"layer fidelity was not measured: {error}", stacklevel=2)
    return report


def check_latency_runs(latency_runs):
    """`latency_runs` is a count of runs, 0 for none."""
    if isinstance(latency_runs, bool) or not isinstance(latency_runs, int) or latency_runs < 0:
        raise ValueError(
            f"`latency_runs` must be a non-negative integer (0 measures no latency); "
            f"got {latency_runs!r}.")


def measure(flatbuffer, data=None, labels=None, keras_model=None, threads=1,
            latency_runs=100, name="model"):
    """An `ExportReport` for an existing .tflite (bytes or path).

    `data` is a batch of inputs: an array, or for several inputs a dict of
    arrays keyed by input name (a list follows `keras_model.inputs`' order,
    or without `keras_model` the .tflite's). `keras_model`, when given with
    `data`, is the reference for top-1 agreement and Keras accuracy.
    """
    check_latency_runs(latency_runs)
    flatbuffer = read_tflite(flatbuffer, "flatbuffer")
    several = keras_model is not None and len(keras_model.inputs) > 1
    runner = TFLiteModel(flatbuffer, num_threads=threads,
                         input_names=input_names(keras_model) if several else None)
    operators, int8_fraction = _operators(flatbuffer)
    stats = weight_stats(flatbuffer)
    kernels = [s for s in stats if s.op_type in KERNEL_OPS]
    total = sum(s.size for s in kernels)
    zeros = sum(s.size * s.zero_fraction for s in kernels)
    per_channel = [s.max_unique_per_channel for s in kernels if s.max_unique_per_channel]
    inspection = inspect_tflite(flatbuffer)
    if data is not None:
        data = runner.by_name(data)  # {input name: array}
        if len(data) == 1:
            (data,) = data.values()
    if data is not None and count_examples(data):
        sample = _example(data, 0)
    else:
        sample = runner.random_sample()
    report = ExportReport(
        name=name,
        mode="",
        path=None,
        techniques=[],
        bytes=len(flatbuffer),
        gzip_bytes=gzipped_size(flatbuffer),
        operators=operators,
        int8_fraction=int8_fraction,
        sparsity=zeros / total if total else 0.0,
        max_unique_per_channel=max(per_channel) if per_channel else None,
        weights=[s.to_dict() for s in stats],
        sparse_storage=any(s.sparse for s in stats),
        sparse_ready=inspection.sparse_ready,
        sparse_reasons=inspection.reasons,
        latency_us=measure_latency(flatbuffer, sample, runs=latency_runs,
                                   warmup=min(20, latency_runs), num_threads=threads)
        if latency_runs else None,
        threads=threads,
        latency_runs=latency_runs,
        xnnpack=dataclasses.asdict(runner.xnnpack_delegation()),
    )
    if data is not None:
        predicted = runner.predict(data).argmax(-1)
        report.examples = int(count_examples(data))
        if keras_model is not None:
            reference = _keras_predict(keras_model, data).argmax(-1)
            report.agreement = float(np.mean(predicted == reference))
            if labels is not None:
                report.keras_accuracy = float(np.mean(reference == labels))
        if labels is not None:
            report.accuracy = float(np.mean(predicted == labels))
    return report


def _example(data, i):
    """Example `i` of a batch of inputs (an array, or a dict of arrays)."""
    if isinstance(data, dict):
        return {name: np.asarray(values[i]) for name, values in data.items()}
    return np.asarray(data[i])


def _calibration_samples(data, count):
    """Up to `count` examples of `data` (an array, or a dict of arrays by
    input name: the same examples of every input)."""
    if not isinstance(data, dict):
        return calibration_samples(data, count)
    index = calibration_samples(np.arange(count_examples(data)), count)
    return {name: values[index] for name, values in data.items()}


def _keras_predict(model, data):
    """The Keras model's output on `data` (an array, or a dict of arrays by
    input name) as one array: a model built on a dict of inputs is fed its
    dict keys, one with a dict output gives its one entry."""
    if isinstance(data, dict):
        structure = getattr(model, "_inputs_struct", None)
        if isinstance(structure, dict):
            data = {key: data[tensor.name] for key, tensor in structure.items()}
        else:
            data = [data[t.name] for t in model.inputs]
    output = _predict_in_one_trace(model, data)
    if isinstance(output, dict):
        (output,) = output.values()
    return np.asarray(output)


# Keras' `predict` traces its step for the shape of the first batch, then
# again with the batch size free for a last batch of another size: two
# traces where one does, and a QAT model's inference graph takes seconds to
# trace (benchmarks/trace_time.py).
PREDICT_BATCH = 32


def _predict_in_one_trace(model, data):
    """`model.predict(data)` (an array, or a list or dict of arrays, one per
    input) in batches of one size: the last batch filled up with the first
    examples again, their outputs dropped. Per-example outputs are what
    `predict` gives (inference computes each example on its own)."""
    import keras

    count = len(keras.tree.flatten(data)[0])
    if not count:
        return model.predict(data, verbose=0)
    batch = min(PREDICT_BATCH, count)
    short = -count % batch
    if short:
        data = keras.tree.map_structure(
            lambda values: np.concatenate([values, values[:short]]), data)
    output = model.predict(data, batch_size=batch, verbose=0)
    return keras.tree.map_structure(lambda values: values[:count], output)


def _tf():
    from tfmot_lite.quiet import import_tensorflow

    return import_tensorflow()


def _kernel_zero_fraction(model):
    from tfmot_lite.core import graph

    zeros = total = 0
    for _, layer in graph.iter_layers(model):
        kernel = getattr(layer, "kernel", None)
        if kernel is not None:
            values = np.asarray(kernel)
            zeros += int(values.size - np.count_nonzero(values))
            total += values.size
    return zeros / total if total else 0.0


def _operator_dtypes(flatbuffer):
    """`[(operator name, {dtypes of its tensors})]` of the graph as stored
    (read by LiteRT without delegates, so no DELEGATE node hides them)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from tfmot_lite.quiet import silenced_stderr

    with silenced_stderr():
        interpreter = Interpreter(
            model_content=bytes(flatbuffer),
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        interpreter.allocate_tensors()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
    return [
        (op["op_name"], {np.dtype(tensors[i]["dtype"])
                         for i in list(op["inputs"]) + list(op["outputs"]) if i in tensors})
        for op in interpreter._get_ops_details()
    ]


def _operators(flatbuffer):
    """`(operator names, int8 share)`. The share counts the operators that
    handle data (a float or 8/16-bit integer tensor; int32 shape arithmetic
    is left out) and touch no floating-point tensor: the QUANTIZE/DEQUANTIZE
    of a float interface count as float."""
    rows = _operator_dtypes(flatbuffer)
    data_ops = [kinds for _, kinds in rows if kinds & _DATA_TYPES]
    integer = sum(not any(np.issubdtype(k, np.floating) for k in kinds) for kinds in data_ops)
    return [name for name, _ in rows], integer / len(data_ops) if data_ops else 0.0


def float_operators(flatbuffer):
    """The operators of a .tflite (bytes or path) that touch a float tensor,
    the QUANTIZE/DEQUANTIZE of a float interface left out: what keeps an
    integer export from being fully integer."""
    flatbuffer = read_tflite(flatbuffer, "flatbuffer")
    return [
        name for name, kinds in _operator_dtypes(flatbuffer)
        if name not in ("QUANTIZE", "DEQUANTIZE")
        and any(np.issubdtype(k, np.floating) for k in kinds)
    ]
