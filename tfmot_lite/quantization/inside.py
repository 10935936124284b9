"""Quantizing inside a layer: configs for layers TFLite runs as many ops.

TFLite has no integer kernel for a LayerNormalization or a
MultiHeadAttention as a whole. The converter lowers them to MEAN, SUB, MUL,
RSQRT, FULLY_CONNECTED, BATCH_MATMUL, SELECT_V2, SOFTMAX, ..., and each of
those int8 (or int16) ops needs a range for its output; an op whose output
has none stays float. An `InsideQuantizeConfig` names those *points*
(`"scores"`, `"probabilities"`, ...) with one quantizer each, and replaces,
for one call of its `QuantizeWrapper`, some callables of the layer (its
`call`, a sub-layer's `call`, a method such as `_compute_attention`) by
versions that fake-quantize every point in the order the converter emits
the ops. The ranges live in the wrapper's variables, named after the
points, as every other quantizer's do.

Weights are named by attribute path (`"_query_dense.kernel"`), quantized
symmetric narrow-range per tensor: the int8 weights of TFLite's
FULLY_CONNECTED, BATCH_MATMUL and MUL.
"""

import functools

import keras
from keras import ops

from tfmot_lite.quantization import quantizers as q
from tfmot_lite.quantization.input_range import either_range, int8_range, integer_call_excluded
from tfmot_lite.quantization.integer_grid import on_integer_grid, stored_constant, symmetric_scale
from tfmot_lite.quantization.config import (
    QuantizeConfig,
    default_activation_quantizer,
    default_weight_quantizer,
    device_activation,
)


def _deserialized(quantizer):
    if isinstance(quantizer, dict):
        return keras.saving.deserialize_keras_object(quantizer)
    return quantizer


def _owner_and_attr(layer, path):
    *parents, attr = path.split(".")
    owner = functools.reduce(getattr, parents, layer)
    return owner, attr


# `Points.integer_ranges` keys beside the point names.
LAYER_INPUT, LAYER_OUTPUT = "<layer input>", "<layer output>"


class Points:
    """The quantization points of one wrapper call: `points(name, x)`
    fake-quantizes `x` with the quantizer and range of point `name`;
    `points.low(name)` is that range's current minimum, `points.training`
    whether the call is a training step."""

    def __init__(self, quantizers, training, input_source=None, output=None, weights=None,
                 input_sources=None):
        self._quantizers = quantizers  # {name: (quantizer, variables)}
        self._training = bool(training)
        self._input_source = input_source  # the range found for the input (a `Borrowed`)
        self._input_sources = input_sources  # the same for each input of a merge
        self._output = output  # the range the op writes (a `Borrowed`: `written_range`)
        self._weights = weights or {}  # {path: (variable, quantizer, variables)}

    def __contains__(self, name):
        return name in self._quantizers

    @property
    def training(self):
        """Whether this call is a training step (ranges learn)."""
        return self._training

    def __call__(self, name, x, update=True, **hint):
        """`update=False` rounds `x` to the point's stored range without
        learning from it (a recurrent state entering a step)."""
        quantizer, variables = self._quantizers[name]
        if self._training and not update:
            # A snapshot: the range is written later in the same step
            # (PyTorch's autograd refuses a variable changed in place).
            variables = {k: ops.copy(v) for k, v in variables.items()}
        return quantizer(x, self._training and update, variables, **hint)

    def num_bits(self, name):
        """The bit width of point `name`'s range."""
        return self._quantizers[name][0].num_bits

    def as_stored(self, constant, name):
        """`constant`, an operand of an int8 op among point `name`'s (a
        bias or a LayerNorm's beta in an ADD), as the converter stores it
        (`quantizers.fake_quant_constant`), in inference; as it is in
        training, in the converter's trace (the converter rounds it there),
        with float activations and at 16 bits."""
        if (self._training or self.num_bits(name) != 8 or q.tracing_for_converter()
                or q.activations_are_float()):
            return constant
        return q.fake_quant_constant(constant)

    def integer_ranges(self, layer):
        """`{name: Borrowed}`, the 8-bit ranges of this call's points, of
        the layer's input (`LAYER_INPUT`, as found in the graph) and of the
        wrapper's output (`LAYER_OUTPUT`), in a call that computes on the
        int8 integers as the device does (inference, outside the
        converter's trace: `input_range.integer_call_excluded`); None in
        one that computes in float."""
        if integer_call_excluded(self._training, layer):
            return None
        found = {name: int8_range(pair) for name, pair in self._quantizers.items()}
        source = self._input_source
        found[LAYER_INPUT] = None if source is None else int8_range((source.quantizer,
                                                                     source.weights))
        found[LAYER_OUTPUT] = int8_range(self._output)
        return {name: value for name, value in found.items() if value is not None}

    def operand_ranges(self, layer):
        """The 8-bit range each input of a merge lies on (as found in the
        graph), in a call that computes on the int8 integers; None where
        one is missing or the call computes in float."""
        if integer_call_excluded(self._training, layer) or not self._input_sources:
            return None
        found = [None if s is None else int8_range((s.quantizer, s.weights))
                 for s in self._input_sources]
        return None if None in found else found

    def weight_step(self, path):
        """The step the converter stores the int8 weight at `path` with
        (`max|w| / 127`, its quantizer's `kernel_max_abs`), or None."""
        if path not in self._weights:
            return None
        variable, quantizer, variables = self._weights[path]
        max_abs = getattr(quantizer, "kernel_max_abs", None)
        max_abs = None if max_abs is None else max_abs(variable, variables)
        return None if max_abs is None else symmetric_scale(max_abs, quantizer.num_bits)

    def low(self, name):
        quantizer, variables = self._quantizers[name]
        if "min_var" in variables:
            return variables["min_var"]
        return getattr(quantizer, "init_min", 0.0)


class InsideQuantizeConfig(QuantizeConfig):
    """Base class: weights by attribute path, points inside the call.

    Subclasses implement `weight_paths(layer)`, `point_names(layer)` and
    `substitutions(layer, points)`, and may override
    `point_quantizer(name)` (default: the scheme's activation quantizer) and
    `get_output_quantizers` (default: one, after the whole layer).

    Args:
      num_bits_activation: 8 (int8 activations) or 16 (int16, the 16x8
        scheme).
      num_bits_weight: bits of the weights (8 for TFLite).
      weight_quantizers: `{path: Quantizer}` in place of `weight_quantizer`
        for some weights (the collaborative schemes put their zero- or
        cluster-preserving quantizers there).
    """

    def __init__(self, num_bits_activation=8, num_bits_weight=8, weight_quantizers=None):
        self.num_bits_activation = int(num_bits_activation)
        self.num_bits_weight = int(num_bits_weight)
        self.weight_quantizers = {
            path: _deserialized(quantizer) for path, quantizer in (weight_quantizers or {}).items()
        }

    # -- to implement ---------------------------------------------------------

    def weight_paths(self, layer):
        return []

    def point_names(self, layer):
        raise NotImplementedError

    def substitutions(self, layer, points):
        """`[((owner, attribute), value)]` swapped in for one call."""
        raise NotImplementedError

    # -- the QuantizeConfig interface ----------------------------------------

    def activation_quantizer(self):
        return default_activation_quantizer(self.num_bits_activation)

    def point_quantizer(self, name):
        return self.activation_quantizer()

    def get_point_quantizers(self, layer):
        """`{point name: Quantizer}`, built once by the wrapper."""
        return {name: self.point_quantizer(name) for name in self.point_names(layer)}

    def weight_quantizer(self, layer, path):
        """Symmetric narrow-range per tensor, `num_bits_weight` bits."""
        return default_weight_quantizer(self.num_bits_weight)

    def weight_variable(self, layer, path):
        return getattr(*_owner_and_attr(layer, path))

    def get_weights_and_quantizers(self, layer):
        return [
            (self.weight_variable(layer, path),
             self.weight_quantizers.get(path) or self.weight_quantizer(layer, path))
            for path in self.weight_paths(layer)
        ]

    def set_quantize_weights(self, layer, quantize_weights):
        for path, value in zip(self.weight_paths(layer), quantize_weights):
            setattr(*_owner_and_attr(layer, path), value)

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [self.activation_quantizer()]

    def get_config(self):
        config = {
            "num_bits_activation": self.num_bits_activation,
            "num_bits_weight": self.num_bits_weight,
        }
        if self.weight_quantizers:
            config["weight_quantizers"] = {
                path: keras.saving.serialize_keras_object(quantizer)
                for path, quantizer in self.weight_quantizers.items()
            }
        return config


class OutputFusableQuantizeConfig(InsideQuantizeConfig):
    """An inside config whose last op can write the range of the one layer
    reading it: a ReLU TFLite fuses into that op (the op computes `relu(x)`
    and rounds once, into the ReLU's range), or a concatenation it alone
    feeds. `without_output()` (`config.without_output`, where the layout
    finds such a reader) leaves the output unquantized,
    `quantize_output=False`; the integer path then writes into the reader's
    range (`Points.integer_ranges`' `LAYER_OUTPUT`)."""

    def __init__(self, num_bits_activation=8, num_bits_weight=8, weight_quantizers=None,
                 quantize_output=True):
        super().__init__(num_bits_activation, num_bits_weight, weight_quantizers)
        self.quantize_output = bool(quantize_output)

    def get_output_quantizers(self, layer):
        return super().get_output_quantizers(layer) if self.quantize_output else []

    def without_output(self):
        return type(self)(self.num_bits_activation, self.num_bits_weight,
                          self.weight_quantizers, quantize_output=False)

    def get_config(self):
        return {**super().get_config(), "quantize_output": self.quantize_output}


def projection_call(layer, product, points, prefix="", bias_scale=None):
    """`layer.call` of a Dense or EinsumDense whose matmul is quantized
    before the bias is added: `product(inputs, kernel)` is its matmul.

    The converter lowers a matmul over more than two axes to
    FULLY_CONNECTED and reshapes; the bias add then follows a reshape and is
    not fused into the matmul, so the matmul's output needs its own range
    (`<prefix>matmul`). An activation TFLite does not fuse gets a range
    before it (`<prefix>pre_activation`) and runs as its integer op does
    (`config.device_activation`: a sigmoid's output on its fixed grid). The
    last value is quantized by the caller (`<prefix>output`, or the
    wrapper's output quantizer: a QUANTIZE after such a fixed grid).
    `bias_scale` multiplies the bias (a constant the converter folds) where
    the kernel was scaled too (`ScaledQuantizer`).

    The ADD's bias is an int8 constant on its own range
    (`quantizers.fake_quant_constant`), which inference adds as stored: the
    float bias had put 1.6-7% of a Dense-over-a-sequence's or an
    EinsumDense's outputs a step off XNNPACK's. Training adds the float
    bias; the converter's trace leaves the rounding to the converter.
    """
    activation = layer.activation

    def call(inputs, training=None):
        device = None
        if not (points.training or prefix or bias_scale is not None):
            device = _integer_projection(layer, product, points, inputs)
        x = product(inputs, layer.kernel) if device is None else device
        if layer.bias is not None and device is None:
            bias = layer.bias if bias_scale is None else ops.multiply(layer.bias, bias_scale)
            if not q.added_for_nothing(layer.bias):
                point = f"{prefix}matmul"
                x = q.unless_folded(points(point, x), x, layer.bias, 0.0, points.training)
                bias = points.as_stored(bias, point)
            x = ops.add(x, bias)
        point = f"{prefix}pre_activation"
        if point in points:
            # The activation's own op (LOGISTIC, TANH, GELU, ...), rounded
            # where TFLite rounds it; the caller's range follows.
            x = x if device is not None else points(point, x)
            x, _ = device_activation(activation, x, points.training, points.num_bits(point))
        elif activation is not None:
            x = activation(x)
        return x

    return call


def _integer_projection(layer, product, points, inputs):
    """The matmul and the bias's ADD of `projection_call` on the int8
    integers they compute with, as XNNPACK does: FULLY_CONNECTED without a
    bias, its accumulator requantized into the matmul's range
    (`kernel_arithmetic.requantize`), then the ADD of the bias as stored
    (int8 on its own range) in fixed point (`requantize_sum`) into the
    range after it (the activation's input, or the output's). A bias of
    zeros, which the converter folds away, leaves the matmul rounding into
    that range. None where a range is missing or outside inference
    (`Points.integer_ranges`): the float path runs.

    The float path, `fq(x @ w)` then `fq(. + b)`, lands on these integers
    but at ties: ConvNeXt's pointwise layers (a Dense with a GELU, then a
    Dense, over a Conv-BN-ReLU's pixels), 65 of 524,288 outputs a step off
    XNNPACK's."""
    ranges = points.integer_ranges(layer)
    step = points.weight_step("kernel")
    if ranges is None or step is None or any(
            name not in ranges for name in (LAYER_INPUT, LAYER_OUTPUT)):
        return None
    if any(name in points and name not in ranges for name in ("matmul", "pre_activation")):
        return None
    source, after = ranges[LAYER_INPUT], ranges.get("pre_activation", ranges[LAYER_OUTPUT])
    accumulator = product(source.integers_of(inputs),
                          on_integer_grid(layer.kernel, step))
    product_step = source.scale() * step
    if layer.bias is None:
        return after.requantize(accumulator, product_step)
    folds = ops.all(ops.equal(layer.bias, 0.0))
    into = either_range(folds, after, ranges["matmul"])
    matmul = into.requantize(accumulator, product_step)
    bias, bias_step = stored_constant(layer.bias)
    added = after.requantize_sum(into.integers_of(matmul), into.scale(), bias,
                                 bias_step)
    return ops.where(folds, matmul, added)


def einsum_dense_call(dense, points, prefix="", bias_scale=None):
    return projection_call(
        dense, lambda x, kernel: ops.einsum(dense.equation, x, kernel), points, prefix,
        bias_scale)


def projection_points(layer, prefix=""):
    """The point names `projection_call` uses for `layer`."""
    from tfmot_lite.core.layer_kinds import activation_name

    names = [f"{prefix}matmul"] if layer.bias is not None else []
    if activation_name(layer.activation) not in ("linear", "relu", "relu6"):
        names.append(f"{prefix}pre_activation")
    return names


_register = keras.saving.register_keras_serializable(package="tfmot_lite")


@_register
class EinsumDenseQuantizeConfig(InsideQuantizeConfig):
    """EinsumDense: int8 kernel (per tensor), matmul, then bias and
    activation, output quantized by the wrapper."""

    def weight_paths(self, layer):
        return ["kernel"]

    def point_names(self, layer):
        return projection_points(layer)

    def substitutions(self, layer, points):
        return [((layer, "call"), einsum_dense_call(layer, points))]


@_register
class DenseQuantizeConfig(OutputFusableQuantizeConfig):
    """Dense on inputs of more than two axes (a sequence, a grid of
    patches): int8 kernel (per tensor), the matmul quantized before the bias
    (the converter reshapes between them), output quantized by the wrapper,
    unless a ReLU layer follows (TFLite fuses it into the bias's ADD; a
    Dense-ReLU over pixels had rounded twice, 27% of the ReLU's outputs a
    step off the .tflite's). On 2-D inputs the converter fuses the bias:
    `Default8BitQuantizeConfig`."""

    def weight_paths(self, layer):
        return ["kernel"]

    def point_names(self, layer):
        return projection_points(layer)

    def substitutions(self, layer, points):
        product = lambda x, kernel: ops.matmul(x, kernel)  # noqa: E731
        return [((layer, "call"), projection_call(layer, product, points))]


def _summed(inputs, points, ranged):
    """`inputs` added two at a time, as TFLite's ADD adds them; the first
    `ranged` partial sums rounded into their ranges (`partial_1`, ...)."""
    total = inputs[0]
    for i, x in enumerate(inputs[1:], start=1):
        total = ops.add(total, x)
        if i <= ranged:
            total = points(f"partial_{i}", total)
    return total


def _input_count(layer):
    return len(layer.get_build_config()["input_shape"])


@_register
class SumQuantizeConfig(InsideQuantizeConfig):
    """`Add` of more than two tensors (BERT's token + position + segment
    embeddings): TFLite's ADD takes two, so each partial sum gets a range
    (`partial_1`, ...); the wrapper quantizes the whole sum."""

    def point_names(self, layer):
        return [f"partial_{i}" for i in range(1, _input_count(layer) - 1)]

    def substitutions(self, layer, points):
        count = _input_count(layer)
        return [((layer, "_merge_function"), lambda inputs: _summed(inputs, points, count - 2))]


@_register
class AverageQuantizeConfig(InsideQuantizeConfig):
    """`Average` of `n` tensors: TFLite adds them two at a time (ADD) and
    multiplies the sum by the constant `1/n` (MUL), so every partial sum,
    the whole one included, gets a range (`partial_1`, ...,
    `partial_<n-1>`); the wrapper quantizes the average. With the
    average's range alone, the converter had left the ADD and MUL float."""

    def point_names(self, layer):
        return [f"partial_{i}" for i in range(1, _input_count(layer))]

    def substitutions(self, layer, points):
        def merge(inputs):
            return _summed(inputs, points, len(inputs) - 1) / len(inputs)

        return [((layer, "_merge_function"), merge)]


def _scaled_sum_integers(layer, points, x, residual):
    """`x + residual * scale` on the int8 integers, as the .tflite computes
    it: the residual times the constant as stored, requantized into the
    product's range (MUL; none for a scale of one), then the ADD into the
    output's range (where a ReLU the ADD fuses follows, the ReLU's, which
    the wrapper's `reader_range` clamps in), by the kernel that runs it
    (`device_sum`). None where a range is missing or the call computes in
    float."""
    ranges = points.integer_ranges(layer)
    operands = points.operand_ranges(layer)
    if ranges is None or operands is None or LAYER_OUTPUT not in ranges or (
            "product" in points and "product" not in ranges):
        return None
    (x_range, residual_range), out = operands, ranges[LAYER_OUTPUT]
    product_range = residual_range
    product = residual_range.integers_of(residual)
    if "product" in points:
        constant, step = stored_constant(layer.scale)
        product_range = ranges["product"]
        product = product_range.integers_of(product_range.requantize(
            product * constant, residual_range.scale() * step))
    return out.requantize_sum(x_range.integers_of(x), x_range.scale(),
                              product, product_range.scale())


@_register
class ScaledSumQuantizeConfig(OutputFusableQuantizeConfig):
    """keras.applications' `CustomScaleLayer`, Inception-ResNet's residual
    `x + r * scale`: TFLite multiplies `r` by the constant (MUL, its output
    rounded into a range of its own, `product`), then adds (ADD). The
    wrapper quantizes the sum, unless a ReLU that TFLite fuses into the ADD
    follows (`quantize_output=False`: the ReLU's range is the op's). A
    scale of one (the last block8's) is no MUL in the .tflite (the
    converter folds it away, and the residual's producer writes into the
    ADD's operand range once), so it has no point: rounding the residual
    into a second range put 656 of 524,288 outputs of a probe a step off
    XNNPACK's."""

    def point_names(self, layer):
        return [] if float(layer.scale) == 1.0 else ["product"]

    def substitutions(self, layer, points):
        def call(inputs):
            x, residual = inputs
            device = _scaled_sum_integers(layer, points, x, residual)
            if device is not None:
                return device
            if "product" not in points:
                return ops.add(x, residual)
            return ops.add(x, points("product", ops.multiply(residual, layer.scale)))

        return [((layer, "call"), call)]
