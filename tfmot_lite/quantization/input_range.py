"""The range a layer's input lies on, found through the Keras graph.

Some int8 kernels compute in their input's scale without owning it:

* an average pooling writes the mean of its input's integers in that scale
  (`same_scale.QuantizeAveragePooling` rounds as it does);
* a convolution or fully connected layer adds its bias as an int32 in
  units of `input_scale * kernel_scale`, so the device adds the bias
  rounded to that grid (`Borrowed.bias_integers`; the QAT wrappers add it
  so in inference).

Their QAT wrappers need the range of the layer that writes their input.
`BorrowsInputRange` finds it when the wrapper is first called on a
symbolic tensor whose writer has one: when `quantize_model` builds the
model, and again in the new layers of a loaded or cloned model. Walking
back passes over ops that keep their input's scale (padding, reshapes, the
Identity a folded BatchNorm leaves, ...) to the layer whose
`output_range()` rounds it. A layer that reads the input of a model the
user nested (ConvNeXt's stem) sees that model's own `Input` when the
nested model is built: it gets the range of the tensor the outer graph
passes in once a layer after the nested model walks back into it
(`link_nested_inputs`), or, where none follows it (a nested model that
ends the graph), on the first call with real tensors
(`link_models_in_call`). Where none is found (a layer with no range of its
own writes the input, or the wrapper only ever sees eager tensors), the
wrapper computes as it would without it.

The other way: an op that owns no range (a convolution whose ReLU its
TFLite op fuses, or that only a Concatenate reads) writes its reader's.
The reader, on its symbolic call, hands its range to that writer
(`BorrowsInputRange.reader_range`).
"""

import math

import keras

from tfmot_lite.core import layer_kinds
from tfmot_lite.quantization import graph_memo
from tfmot_lite.quantization import quantizers as q
from tfmot_lite.quantization.integer_grid import (
    integer_grid, on_integer_grid, range_bias_integers, range_scale, symmetric_scale,
)
from tfmot_lite.quantization.kernel_arithmetic import (
    device_sum, requantize, requantize_copy, requantize_mean,
)


class Borrowed:
    """A range another layer owns: `(quantizer, weights)`, held outside
    Keras' tracking so the borrowing layer neither saves nor trains it.
    `activation`: a ReLU ("relu", "relu6") the op writing into it fuses,
    which each `requantize*` clamps in (`reader_range`)."""

    def __init__(self, quantizer, weights, activation=None):
        self.quantizer = quantizer
        self.weights = weights
        self.activation = activation

    def _bounds(self):
        weights = self.weights
        low, high = graph_memo.memoized_read(
            "range", (weights["min_var"], weights["max_var"]),
            lambda: (keras.ops.reshape(weights["min_var"], ()),
                     keras.ops.reshape(weights["max_var"], ())))
        return low, high, self.quantizer.num_bits, self.quantizer.narrow_range

    def scale(self):
        """The grid step of the range (a scalar tensor; 0 for the empty
        range `[0, 0]`)."""
        return range_scale(*self._bounds())

    def bias_integers(self, bias, kernel_max_abs, num_bits=8, bits=32):
        """`(integers, step)`: `bias` as the int32 the converter stores for
        a kernel reading this range whose channels' largest weights are
        `kernel_max_abs` (`integer_grid.range_bias_integers`), and the step
        `input_scale * kernel_scale` it is in units of."""
        low, high, input_bits, narrow_range = self._bounds()
        integers = range_bias_integers(bias, low, high, kernel_max_abs, input_bits, narrow_range,
                                       num_bits, bits)
        return integers, self.scale() * symmetric_scale(kernel_max_abs, num_bits)

    def integers_of(self, x):
        """`x`, a tensor on this range's grid, as the integers an int8
        kernel reads (less the zero point): exact in float32."""
        return on_integer_grid(x, self.scale())

    def requantize(self, accumulator, product_step, activation=None):
        """An int8 kernel's accumulator rounded into this range
        (`kernel_arithmetic.requantize`)."""
        return requantize(accumulator, product_step, *self._bounds(),
                          activation or self.activation)

    def integers(self):
        """`(scale, zero_point, q_min, q_max)` as the converter stores the
        range (`integer_grid.integer_grid`; the zero point unsigned)."""
        return integer_grid(*self._bounds())

    def lookup(self, kernel, x, source):
        """A one-input int8 kernel of `kernel_arithmetic` (`hard_swish_integers`,
        `rsqrt_integers`) on the integers `x` (less the zero point of their
        range, `source`) into this range, looked up in the table of its
        256 inputs' outputs: one gather instead of some twenty elementwise
        integer ops."""
        ops = keras.ops
        scale, zero_point, q_min, q_max = self.integers()
        _, input_zero_point, _, _ = source.integers()
        stored = ops.arange(256, dtype="float32")  # every input, unsigned
        table = kernel(stored - input_zero_point, source.scale(), scale)
        table = (ops.clip(table + zero_point, q_min, q_max) - zero_point) * scale
        index = ops.cast(ops.clip(x + input_zero_point, 0, 255), "int32")
        return ops.take(table, index)

    def requantize_copy(self, x, source):
        """The integers `x` (less the zero point of their range, `source`)
        moved into this range by an int8 QUANTIZE
        (`kernel_arithmetic.requantize_copy`)."""
        return requantize_copy(x, source.scale(), *self._bounds())

    def requantize_mean(self, total, count, source):
        """An int8 MEAN of `count` integers (less the zero point of their
        range, `source`) summing to `total`, rounded into this range
        (`kernel_arithmetic.requantize_mean`)."""
        _, input_zero_point, _, _ = source.integers()
        return requantize_mean(total, count, source.scale(), input_zero_point, *self._bounds())

    def requantize_sum(self, a, a_step, b, b_step):
        """An int8 ADD of two operands' integers rounded into this range, by
        the kernel that runs it (`kernel_arithmetic.device_sum`: XNNPACK's,
        or LiteRT's built-in one for scales XNNPACK does not take)."""
        return device_sum(a, a_step, b, b_step, *self._bounds(), self.activation)


def either_range(condition, when_true, when_false):
    """The range `when_true` where the scalar `condition` holds, else
    `when_false` (`condition` None: `when_false`): the range an op rounds
    into where the converter may fold the op after it away."""
    if condition is None:
        return when_false
    bounds = {key: keras.ops.where(condition, keras.ops.convert_to_tensor(when_true.weights[key]),
                                   keras.ops.convert_to_tensor(when_false.weights[key]))
              for key in ("min_var", "max_var")}
    return Borrowed(when_false.quantizer, bounds)


def per_tensor_range(found):
    """`found` (an `output_range()` answer) as a `Borrowed` if it is one
    tracked range for the whole tensor, else None."""
    if found is None:
        return None
    quantizer, weights = found
    if getattr(quantizer, "per_axis", True) or not weights or not {
            "min_var", "max_var"} <= set(weights):
        return None
    if any(math.prod(weights[k].shape) != 1 for k in ("min_var", "max_var")):
        return None
    return Borrowed(quantizer, weights)


def int8_range(found):
    """`per_tensor_range(found)` (or `found`, a `Borrowed`) where it is an
    8-bit range, else None: what the integer inference paths requantize
    into."""
    if not isinstance(found, Borrowed):
        found = per_tensor_range(found)
    return found if found is not None and found.quantizer.num_bits == 8 else None


def _passes_scale(op):
    """Whether `op`'s output is on its input's grid: an op whose int8
    kernel keeps its input's scale and owns no range."""
    if isinstance(op, keras.layers.Identity) or getattr(op, "keeps_input_scale", False):
        return True
    return isinstance(op, keras.layers.Layer) and not isinstance(
        op, keras.layers.InputLayer) and layer_kinds.quantize_kind(op) == "pass"


def _scale_kept_input(history):
    """The one input tensor of the op at `history` if that op keeps its
    input's scale, else None."""
    if not _passes_scale(history.operation):
        return None
    inputs = history.operation._inbound_nodes[history.node_index].input_tensors
    return inputs[0] if len(inputs) == 1 else None


def input_range(tensor, link_nested=False):
    """The range whose grid `tensor`'s values lie on (a `Borrowed`), or
    None: walking back through the Keras graph from a symbolic tensor, over
    ops that keep their input's scale, to the layer whose `output_range()`
    rounds it. With `link_nested`, each nested model the walk enters has
    its input linked first (`link_nested_inputs`)."""
    history = getattr(tensor, "_keras_history", None)
    while history is not None:
        op = history.operation
        if isinstance(op, keras.Model) and getattr(op, "outputs", None):
            # A nested model (one the user nested, or a layout split inside
            # one): the range this output was rounded into, inside it.
            if link_nested:
                link_nested_inputs(op)
            history = getattr(op.outputs[history.tensor_index], "_keras_history", None)
            continue
        owner = getattr(op, "output_range", None)
        if callable(owner):
            return per_tensor_range(owner())
        tensor = _scale_kept_input(history)
        history = getattr(tensor, "_keras_history", None)
    return None


def _writer(tensor):
    """The op that computes the symbolic `tensor`, past ops that keep
    their input's scale (the Identity a folded BatchNorm or ReLU leaves),
    or None."""
    history = getattr(tensor, "_keras_history", None)
    while history is not None:
        kept = _scale_kept_input(history)
        if kept is None:
            return history.operation
        history = getattr(kept, "_keras_history", None)
    return None


def _reads(tensor, model_input):
    """Whether `tensor` is `model_input`, or on its grid through ops that
    keep the scale."""
    while tensor is not None and tensor is not model_input:
        history = getattr(tensor, "_keras_history", None)
        tensor = None if history is None else _scale_kept_input(history)
    return tensor is not None


def _range_passed_in(model, position):
    """The range every call of the nested `model` in a graph passes in at
    its input `position` (a `Borrowed`), or None where a call passes none
    or two calls pass different ones."""
    calls = [node.input_tensors for node in model._inbound_nodes]
    found = [input_range(tensors[position]) if len(tensors) == len(model.inputs) else None
             for tensors in calls]
    if not found or any(source is None for source in found) or any(
            source.weights["min_var"] is not found[0].weights["min_var"] for source in found):
        return None
    return found[0]


def link_nested_inputs(model):
    """Gives the layers of the nested `model` that read one of its inputs
    (directly or through ops that keep the scale) and found no range there
    (a merge, for each of its inputs that does: a residual Add)
    the range of the tensor the outer graph passes in at that input: where
    every call of `model` in a graph passes a tensor on one and the same
    range there. A model nested two deep is linked where a layer of the
    model around it passes it a range, not where it reads that model's own
    input."""
    for position, model_input in enumerate(getattr(model, "inputs", None) or ()):
        found = _range_passed_in(model, position)
        if found is None:
            continue
        for layer in model.layers:
            unranged = getattr(layer, "_input_without_range", None)
            if unranged is not None and layer.input_source is None and _reads(
                    unranged, model_input):
                layer.input_source = found
            sources = getattr(layer, "input_sources", None)
            for k, tensor in enumerate(getattr(layer, "_inputs_without_range", None) or ()):
                if tensor is not None and sources[k] is None and _reads(tensor, model_input):
                    sources[k] = found


def link_models_in_call():
    """Links the inputs of every model inside the model Keras is calling
    now (the outermost layer of the current call, itself included), as
    `link_nested_inputs` does for one: for a nested model no layer reads
    after, whose links no walk back makes (one that ends the graph)."""
    from keras.src.backend.common import global_state

    context = global_state.get_global_attribute("current_call_ctx")
    entry = getattr(context, "entry_layer", None)
    if isinstance(entry, keras.Model):
        for layer in entry._flatten_layers(include_self=True, recursive=True):
            if isinstance(layer, keras.Model):
                link_nested_inputs(layer)


def integer_call_excluded(training, layer):
    """Whether this call of `layer` computes in float, not on the int8
    integers: in training, with activations float, in the converter's
    trace, outside Keras' own steps, or in a dtype other than float32
    (whose sums of such integers are exact; float16's are not)."""
    return bool(training or q.activations_are_float() or q.tracing_for_converter()
                or keras.backend.standardize_dtype(layer.compute_dtype) != "float32"
                or not q.in_keras_step())


class _Readers:
    """The layers found to round a layer's output into their own range
    (`BorrowsInputRange.reader_range`): `[(reader, fused ReLU or None)]`,
    held outside Keras' tracking."""

    def __init__(self):
        self.found = []

    def add(self, reader, activation):
        if all(known is not reader for known, _ in self.found):
            self.found.append((reader, activation))


def _rounds_for_writer(reader):
    """`(True, activation)` where `reader` rounds into its own range the
    output of a layer that owns none, whose int8 op then writes that range:
    a ReLU the op fuses (`activation` "relu" or "relu6"), or a
    concatenation (a Maximum, a Minimum), whose one scale the op writes
    (`activation` None); `(False, None)` for another layer."""
    inner = getattr(reader, "layer", None)
    if not isinstance(inner, keras.layers.Layer):
        return False, None
    relu = layer_kinds.relu_layer_name(inner)
    if relu is not None:
        return True, relu
    return layer_kinds.one_scale_join(inner), None


def _writer_takes(writer, activation):
    """Whether `writer`, owning no output range, computes into the range
    of a layer reading it: a ReLU (`activation`) only where its op fuses one
    (`layer_kinds.fuses_relu`)."""
    if not isinstance(writer, BorrowsInputRange) or writer.output_range() is not None:
        return False
    inner = writer.op_layer()
    return activation is None or (isinstance(inner, keras.layers.Layer)
                                  and layer_kinds.fuses_relu(inner))


class BorrowsInputRange:
    """Mixin for a Keras layer: `self.input_source` is the range its input
    lies on (a `Borrowed`), found on the first symbolic call, or None; a
    layer called on a list of tensors (a merge) gets `input_sources`, one
    per input (None where not found).

    The first range found sticks: a later graph that reuses this layer
    object (a rewrite keeping it) cannot repoint the model it belongs to.
    A loaded or cloned model has new objects."""

    input_source = None
    input_sources = None
    _input_without_range = None  # the symbolic input no range was found for
    _inputs_without_range = None  # the same for each input of a merge
    _linked_in_call = False  # whether `link_models_in_call` ran for it
    _readers = None  # a `_Readers`: the layers that round this one's output

    def __call__(self, *args, **kwargs):
        inputs = args[0] if args else kwargs.get("inputs")
        self._find_input_ranges(inputs)
        if not self._linked_in_call and self._waits_for_link() and not any(
                isinstance(t, keras.KerasTensor) for t in keras.tree.flatten(inputs)):
            self._linked_in_call = True
            link_models_in_call()
        return super().__call__(*args, **kwargs)

    def _waits_for_link(self):
        """Whether it reads a nested model's Input (or, in a merge, one of
        its operands does) and found no range for it yet."""
        if self._input_without_range is not None and self.input_source is None:
            return True
        return any(t is not None and s is None for t, s in zip(
            self._inputs_without_range or (), self.input_sources or ()))

    def op_layer(self):
        """The Keras layer whose TFLite op this layer computes: the wrapped
        layer (a folded Conv-BatchNorm's convolution), or None."""
        return getattr(self, "layer", None)

    def written_range(self):
        """The 8-bit range this layer's int8 op writes its output into: its
        own (`output_range()`), or where it owns none, its reader's
        (`reader_range`); None where neither is one."""
        return int8_range(self.output_range()) or self.reader_range()

    def reader_range(self):
        """The range this layer's int8 op writes where it owns none (the
        layout's fused outputs): that of the one layer found to read it, a
        ReLU the op fuses (the `Borrowed` carries it, to clamp in) or a
        concatenation whose scale it writes; None where there is none, or
        several (NASNet's equal ReLUs, which the converter merges, each
        tracking a range of its own), or it is not an 8-bit range."""
        found = self._readers.found if self._readers is not None else ()
        if len(found) != 1:
            return None
        reader, activation = found[0]
        shared = int8_range(reader.output_range())
        return None if shared is None else Borrowed(shared.quantizer, shared.weights, activation)

    def _tell_writers(self, inputs):
        """Records this layer with each layer writing one of its symbolic
        `inputs` into this layer's range (`reader_range`)."""
        reads_for_writer, activation = _rounds_for_writer(self)
        if not reads_for_writer:
            return
        for tensor in keras.tree.flatten(inputs):
            writer = _writer(tensor)
            if _writer_takes(writer, activation):
                if writer._readers is None:
                    writer._readers = _Readers()
                writer._readers.add(self, activation)

    def _find_input_ranges(self, inputs):
        """`input_source` for one symbolic tensor, `input_sources` for a
        list of them (a merge's), where not found yet; each writer that
        computes into this layer's range told so (`reader_range`)."""
        if isinstance(inputs, keras.KerasTensor) or (
                isinstance(inputs, (list, tuple)) and inputs
                and all(isinstance(t, keras.KerasTensor) for t in inputs)):
            self._tell_writers(inputs)
        if self.input_source is None and isinstance(inputs, keras.KerasTensor):
            self.input_source = input_range(inputs, link_nested=True)
            # Inside a nested model, its Input: linked once it is called.
            self._input_without_range = inputs if self.input_source is None else None
        if (self.input_sources is None and isinstance(inputs, (list, tuple)) and inputs
                and all(isinstance(t, keras.KerasTensor) for t in inputs)):
            self.input_sources = [input_range(t, link_nested=True) for t in inputs]
            self._inputs_without_range = [
                t if source is None else None for t, source in zip(inputs, self.input_sources)]

    def integer_input(self, training, layer):
        """The input's range (a `Borrowed`) where this call of `layer` may
        compute on the int8 integers as the device does
        (`kernel_arithmetic.requantize`): inference with 8-bit activations, outside
        the converter's trace, in float32 (whose sums of such integers are
        exact; float16's are not); else None."""
        source = self.input_source
        if (source is None or source.quantizer.num_bits != 8
                or integer_call_excluded(training, layer)):
            return None
        return source


    def integer_inputs(self, training, layer, partial=False):
        """`input_sources` where this call of `layer` may compute on the
        integers (as `integer_input`, every input's range found, or with
        `partial` at least one, None in place of the others); else None."""
        sources = self.input_sources
        found = [s for s in sources or () if s is not None]
        if (not found or (len(found) < len(sources) and not partial)
                or any(s.quantizer.num_bits != 8 for s in found)
                or integer_call_excluded(training, layer)):
            return None
        return sources

    @staticmethod
    def input_integers(inputs, source):
        """`inputs`, on the grid of `source` (from `integer_input`), as the
        integers the int8 kernel reads less the zero point: exact in float32."""
        return source.integers_of(inputs)

    def device_bias(self, bias, kernel_max_abs, training, num_bits=8):
        """`bias` as the layer's int8 kernel adds it: on the int32 grid of
        the input's step times the kernel's, as the converter rounds it
        (`Borrowed.bias_integers`; `kernel_max_abs()`, a function giving
        the kernel's `max|w|` per output channel, or None where it has
        none), in inference. `bias` itself in training, with activations
        float, in the converter's trace (the converter rounds it there) and
        where no input range was found. No gradient."""
        source = self.input_source
        if (training or source is None or q.activations_are_float()
                or q.tracing_for_converter()):
            return bias
        max_abs = kernel_max_abs()
        if max_abs is None:
            return bias
        # Saturated to int64 (beside 16-bit activations; int32 saturates
        # only channels whose kernel is all but zero).
        integers, step = source.bias_integers(bias, max_abs, num_bits, bits=64)
        rounded = keras.ops.where(step > 0, integers * step, keras.ops.cast(bias, "float32"))
        return keras.ops.cast(rounded, bias.dtype)
