"""Running .tflite models with LiteRT: predictions, latency and size."""

import gzip
import statistics
import time
from collections.abc import Mapping

import numpy as np


class TFLiteModel:
    """A .tflite flatbuffer loaded in the LiteRT interpreter.

    XNNPACK is LiteRT's default CPU delegate and is applied here as in
    deployment. `num_threads=1` matches the single-thread benchmarks of the
    TensorFlow guides.

    Attributes:
      input, output: the interpreter's details of the first input and
        output (a dict: name, index, shape, dtype, quantization).
      inputs: {input name: details} of every input, in the .tflite's input
        order; the names are those of the `serving_default` signature (the
        Keras input names), else the tensor names without
        `serving_default_` and `:0`.
      input_names: the order a list or tuple of several inputs is read in:
        `input_names` as given (e.g. the Keras model's), else `inputs`'.

    `xnnpack=False` runs LiteRT's built-in kernels instead, without the
    delegate: the same .tflite computed a second way, whose rounding differs
    from XNNPACK's in the last bit (how far two correct runtimes disagree on
    a model). `preserve_all_tensors=True` also runs the built-in kernels and
    keeps every intermediate tensor readable after `invoke` (for
    `export.fidelity`). Latency measured either way is not the deployed one.
    """

    def __init__(self, flatbuffer, num_threads=1, input_names=None,
                 preserve_all_tensors=False, xnnpack=True):
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        from tfmot_lite.export.source import read_tflite

        self.flatbuffer = read_tflite(flatbuffer, "flatbuffer")
        from tfmot_lite.quiet import silenced_stderr

        if not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"`num_threads` must be a positive integer; got {num_threads!r}.")
        # LiteRT announces the XNNPACK delegate on stderr; keep it quiet.
        options = {}
        if preserve_all_tensors or not xnnpack:
            options["experimental_op_resolver_type"] = (
                OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        if preserve_all_tensors:
            # Every intermediate tensor stays readable after `invoke` (no
            # delegate takes the graph over, no buffer is reused): what
            # `export.fidelity` compares layer by layer. Slower than deployed.
            options["experimental_preserve_all_tensors"] = True
        with silenced_stderr():
            self.interpreter = Interpreter(
                model_content=self.flatbuffer, num_threads=num_threads, **options
            )
            self.interpreter.allocate_tensors()
        self.input = self.interpreter.get_input_details()[0]
        self.output = self.interpreter.get_output_details()[0]
        self.inputs = _inputs_by_name(self.interpreter)
        self.input_names = list(self.inputs)
        if input_names is not None:
            self.input_names = list(input_names)
            if sorted(self.input_names) != sorted(self.inputs):
                raise ValueError(
                    f"`input_names` ({', '.join(self.input_names)}) are not the "
                    f"model's inputs ({', '.join(self.inputs)})."
                )

    def _quantize_input(self, x, details=None):
        """`x` as the input tensor of `details` (default: the first input)
        takes it: cast, or quantized with that input's scale."""
        details = self.input if details is None else details
        dtype = details["dtype"]
        scale, zero_point = details["quantization"]
        if dtype == np.float32 or not scale:
            # A float input, or an integer one that is no quantized value
            # (token ids for an Embedding): passed as they are.
            return np.asarray(x).astype(dtype)
        info = np.iinfo(dtype)
        q = np.round(x / scale + zero_point)
        return np.clip(q, info.min, info.max).astype(dtype)

    def _dequantize_output(self, y):
        if self.output["dtype"] == np.float32:
            return y
        scale, zero_point = self.output["quantization"]
        return (y.astype(np.float32) - zero_point) * scale

    def xnnpack_delegation(self):
        """Which operators XNNPACK runs and which LiteRT's built-in kernels
        run (a `delegation.Delegation`; none delegated with `xnnpack=False`)."""
        from tfmot_lite.export.delegation import xnnpack_delegation

        return xnnpack_delegation(self.interpreter)

    def by_name(self, x):
        """Inputs for several input tensors as {input name: value}: `x` is a
        dict keyed by input name, or a list/tuple in `input_names` order.
        With one input, an array (or a one-entry dict) maps to its name."""
        if isinstance(x, Mapping):
            missing = [n for n in self.input_names if n not in x]
            extra = sorted(str(k) for k in x if k not in self.inputs)
            if missing or extra:
                problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
                    [f"extra {', '.join(extra)}"] if extra else [])
                raise ValueError(
                    f"The .tflite model takes inputs named {', '.join(self.input_names)}; "
                    f"the names given do not match ({'; '.join(problems)})."
                )
            return {n: x[n] for n in self.input_names}
        if len(self.inputs) == 1:
            return {self.input_names[0]: x}
        if not isinstance(x, (list, tuple)) or len(x) != len(self.input_names):
            raise ValueError(
                f"The .tflite model has {len(self.inputs)} inputs "
                f"({', '.join(self.input_names)}); give a dict of arrays keyed by "
                "those names, or a list in that order."
            )
        return dict(zip(self.input_names, x))

    def _set_inputs(self, sample):
        """Sets one example (no batch axis) on the input tensors."""
        for name, value in self.by_name(sample).items():
            details = self.inputs[name]
            batch = self._quantize_input(np.asarray(value)[None], details)
            self.interpreter.set_tensor(details["index"], batch)

    def invoke(self, sample):
        """Runs one example (no batch axis); returns the float output. For a
        model with several inputs, `sample` is a dict keyed by input name
        (or a list in `input_names` order); each input is quantized with
        its own scale (integer ids are passed as they are)."""
        self._set_inputs(sample)
        self.interpreter.invoke()
        out = self.interpreter.get_tensor(self.output["index"])
        return self._dequantize_output(out)[0]

    def predict(self, x):
        """Runs every example of `x` (batch first) one by one; for several
        inputs `x` is a dict of such arrays keyed by input name (or a list
        in `input_names` order), all with the same number of examples."""
        if len(self.inputs) == 1 and not isinstance(x, Mapping):
            return np.stack([self.invoke(sample) for sample in x])
        columns = {n: np.asarray(v) for n, v in self.by_name(x).items()}
        lengths = {len(v) for v in columns.values()}
        if len(lengths) != 1:
            raise ValueError(
                "The inputs hold different numbers of examples ("
                + ", ".join(f"{n}: {len(v)}" for n, v in columns.items()) + ")."
            )
        return np.stack([
            self.invoke({n: v[i] for n, v in columns.items()})
            for i in range(lengths.pop())
        ])

    def accuracy(self, x, y):
        return float(np.mean(np.argmax(self.predict(x), axis=-1) == y))

    def random_sample(self, seed=0):
        """One example of inputs drawn uniformly from [0, 1) (integer ids
        become 0): an array for one input, a dict by input name for several.
        What latency is measured on when no data is given."""
        rng = np.random.default_rng(seed)
        sample = {
            name: rng.random(tuple(int(d) for d in details["shape"][1:])).astype(np.float32)
            for name, details in self.inputs.items()
        }
        return next(iter(sample.values())) if len(sample) == 1 else sample


def _inputs_by_name(interpreter):
    """{input name: details} of the interpreter's inputs, in their order:
    the names of the one signature when it covers every input tensor, else
    the tensor names stripped of `serving_default_` and `:0`."""
    details = interpreter.get_input_details()
    if len(interpreter.get_signature_list()) == 1:
        signature = interpreter.get_signature_runner().get_input_details()
        names = {d["name"]: key for key, d in signature.items()}
        if all(d["name"] in names for d in details):
            return {names[d["name"]]: d for d in details}
    return {_strip_tensor_name(d["name"]): d for d in details}


def _strip_tensor_name(name):
    """`serving_default_token_ids:0` -> `token_ids`."""
    name = name.removeprefix("serving_default_")
    base, colon, index = name.rpartition(":")
    return base if colon and index.isdigit() else name


def measure_latency(flatbuffer, sample, runs=200, warmup=20, num_threads=1):
    """Median wall time of one inference, in microseconds. `sample` is one
    example (no batch axis); for several inputs, a dict keyed by input name
    (or a list in the .tflite's input order)."""
    if runs < 1:
        raise ValueError(f"`runs` must be at least 1 to take a median; got {runs!r}.")
    model = TFLiteModel(flatbuffer, num_threads=num_threads)
    model._set_inputs(sample)
    interp = model.interpreter
    for _ in range(warmup):
        interp.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interp.invoke()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def gzipped_size(flatbuffer):
    """Bytes after gzip: what an over-the-air update downloads."""
    return len(gzip.compress(bytes(flatbuffer), compresslevel=9))
