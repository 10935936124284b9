"""Quantization-aware training of Keras 3's LSTM, GRU and SimpleRNN layers.

Keras 3 recurrent layers reach TFLite unrolled (`export/recurrent.py`):
per time step, FULLY_CONNECTED / ADD / LOGISTIC / TANH / MUL operators on
the step's input and the previous state. Each gets a range here (the
points of `LSTMQuantizeConfig` / `SimpleRNNQuantizeConfig`), shared by all
time steps, so every step runs integer:

    LSTM                                 points
    x W + b                              input_matmul      FULLY_CONNECTED
    h U                                  recurrent_matmul  FULLY_CONNECTED
    z = x W + b + h U                    gates             ADD
    i, f, o = sigmoid(z_i, z_f, z_o)     (fixed)           LOGISTIC
    g = tanh(z_g)                        (fixed)           TANH
    c = f * c + i * g                    forget, remember, carry   MUL, MUL, ADD
    h = o * tanh(c)                      (fixed), output   TANH, MUL

The incoming states are rounded to their points' ranges first (`output`,
`carry`, without learning from them: the initial zeros would pull the
ranges to nothing): a no-op after the first step, and the initial zero
state, a float FILL in the .tflite, enters the integer graph there. `sigmoid` and `tanh`
outputs take the fixed ranges of TFLite's integer
LOGISTIC (scale 1/256, zero point -128) and TANH (scale 1/128, zero point
0). Kernels are int8 per tensor. The layer's own `use_cudnn` fast path is
off inside the wrapper: it computes the same values without the ranges.
On JAX the layer runs unrolled inside the wrapper (a scan body cannot write
the ranges), so its sequence length must be fixed.
Only the default activations (tanh, sigmoid) and `implementation=2` math are
written here; the layer's config decides nothing else.
"""

import keras
from keras import ops

from tfmot_lite.quantization import quantizers as q
from tfmot_lite.quantization.config import fixed_output_quantizer
from tfmot_lite.quantization.inside import InsideQuantizeConfig

_register = keras.saving.register_keras_serializable(package="tfmot_lite")


_SIGMOID, _TANH = "sigmoid", "tanh"


def _quantizer(config, name, fixed):
    quantizer = fixed_output_quantizer(fixed.get(name), config.num_bits_activation)
    if quantizer is not None:
        return quantizer
    # The smallest and largest values seen, not a moving average: a point is
    # met once per time step, and the first step (zero state) would set an
    # average's range to [0, 0].
    bits = config.num_bits_activation
    return q.AllValuesQuantizer(bits, symmetric=bits == 16)


def lstm_call(cell, points):
    """`cell.call` as the integer ops of the module docstring."""

    def call(inputs, states, training=False):
        # The states on their ranges: a no-op after the first step; the
        # initial zeros (a float FILL) enter the integer graph here.
        h = points("output", states[0], update=False)
        c = points("carry", states[1], update=False)
        x_part = ops.matmul(inputs, cell.kernel)
        if cell.use_bias:  # Fused into the FULLY_CONNECTED.
            x_part = ops.add(x_part, cell.bias)
        x_part = points("input_matmul", x_part)
        h_part = points("recurrent_matmul", ops.matmul(h, cell.recurrent_kernel))
        z = points("gates", ops.add(x_part, h_part))
        z_i, z_f, z_g, z_o = ops.split(z, 4, axis=-1)
        i = points("input_gate", ops.sigmoid(z_i))
        f = points("forget_gate", ops.sigmoid(z_f))
        g = points("candidate", ops.tanh(z_g))
        o = points("output_gate", ops.sigmoid(z_o))
        c = points("carry", ops.add(points("forget", f * c), points("remember", i * g)))
        h = points("output", o * points("carry_tanh", ops.tanh(c)))
        return h, [h, c]

    return call


def gru_call(cell, points):
    """`cell.call` of a GRU (`reset_after` either way) as integer ops:

        x W + b_x                  input_matmul       FULLY_CONNECTED
        h U (+ b_h)                recurrent_matmul   FULLY_CONNECTED
        z, r = sigmoid(x_. + h_.)  update_sum, reset_sum, (fixed)   ADD, LOGISTIC
        r * h_h (reset_after)      reset_recurrent    MUL
        hh = tanh(x_h + ...)       candidate_sum, (fixed)   ADD, TANH
        h = z * h + (1 - z) * hh   keep, update_complement, renew, output
    """
    units = cell.units

    def call(inputs, states, training=False):
        nested = isinstance(states, (list, tuple))
        h = points("output", states[0] if nested else states, update=False)
        input_bias = recurrent_bias = None
        if cell.use_bias:
            if cell.reset_after:
                input_bias, recurrent_bias = cell.bias[0], cell.bias[1]
            else:
                input_bias = cell.bias
        x_part = ops.matmul(inputs, cell.kernel)
        if input_bias is not None:
            x_part = ops.add(x_part, input_bias)
        x_part = points("input_matmul", x_part)
        x_z, x_r, x_h = ops.split(x_part, 3, axis=-1)
        if cell.reset_after:
            h_part = ops.matmul(h, cell.recurrent_kernel)
            if recurrent_bias is not None:
                h_part = ops.add(h_part, recurrent_bias)
        else:
            h_part = ops.matmul(h, cell.recurrent_kernel[:, : 2 * units])
        h_part = points("recurrent_matmul", h_part)
        h_z, h_r = h_part[:, :units], h_part[:, units: 2 * units]
        z = points("update_gate", ops.sigmoid(points("update_sum", x_z + h_z)))
        r = points("reset_gate", ops.sigmoid(points("reset_sum", x_r + h_r)))
        if cell.reset_after:
            h_h = points("reset_recurrent", r * h_part[:, 2 * units:])
        else:
            reset_state = points("reset_recurrent", r * h)
            h_h = points("candidate_matmul",
                         ops.matmul(reset_state, cell.recurrent_kernel[:, 2 * units:]))
        hh = points("candidate", ops.tanh(points("candidate_sum", x_h + h_h)))
        keep = points("keep", z * h)
        renew = points("renew", points("update_complement", 1.0 - z) * hh)
        output = points("output", keep + renew)
        return output, [output] if nested else output

    return call


def simple_rnn_call(cell, points):
    """`cell.call` of a tanh SimpleRNN as integer ops."""

    def call(sequence, states, training=False):
        prev = points("output", states[0] if isinstance(states, (list, tuple)) else states,
                      update=False)
        x_part = ops.matmul(sequence, cell.kernel)
        if cell.bias is not None:
            x_part = ops.add(x_part, cell.bias)
        x_part = points("input_matmul", x_part)
        h_part = points("recurrent_matmul", ops.matmul(prev, cell.recurrent_kernel))
        output = points("output", ops.tanh(points("pre_activation", x_part + h_part)))
        return output, [output] if isinstance(states, (list, tuple)) else output

    return call


class _RecurrentQuantizeConfig(InsideQuantizeConfig):
    FIXED = {}

    def weight_paths(self, layer):
        return ["cell.kernel", "cell.recurrent_kernel"]

    def point_quantizer(self, name):
        return _quantizer(self, name, self.FIXED)

    def get_output_quantizers(self, layer):
        return []  # The cell's output point is the layer's output.

    def cell_call(self, cell, points):
        raise NotImplementedError

    def substitutions(self, layer, points):
        found = [((layer.cell, "call"), self.cell_call(layer.cell, points))]
        if hasattr(layer, "use_cudnn"):
            found.append(((layer, "use_cudnn"), False))
        if keras.backend.backend() == "jax":
            # JAX's scan cannot write the ranges from inside its body.
            found.append(((layer, "unroll"), True))
        return found


@_register
class LSTMQuantizeConfig(_RecurrentQuantizeConfig):
    """An LSTM layer: int8 kernels, a range after every op of a step."""

    FIXED = {"input_gate": _SIGMOID, "forget_gate": _SIGMOID, "output_gate": _SIGMOID,
             "candidate": _TANH, "carry_tanh": _TANH}

    def point_names(self, layer):
        return ["input_matmul", "recurrent_matmul", "gates", "input_gate", "forget_gate",
                "candidate", "output_gate", "forget", "remember", "carry", "carry_tanh",
                "output"]

    def cell_call(self, cell, points):
        return lstm_call(cell, points)


@_register
class GRUQuantizeConfig(_RecurrentQuantizeConfig):
    """A GRU layer: int8 kernels, a range after every op of a step."""

    FIXED = {"update_gate": _SIGMOID, "reset_gate": _SIGMOID, "candidate": _TANH}

    def point_names(self, layer):
        names = ["input_matmul", "recurrent_matmul", "update_sum", "update_gate",
                 "reset_sum", "reset_gate", "reset_recurrent"]
        if not layer.cell.reset_after:
            names.append("candidate_matmul")
        return names + ["candidate_sum", "candidate", "keep", "update_complement", "renew",
                        "output"]

    def cell_call(self, cell, points):
        return gru_call(cell, points)


@_register
class SimpleRNNQuantizeConfig(_RecurrentQuantizeConfig):
    """A tanh SimpleRNN layer: int8 kernels, a range after every op."""

    FIXED = {"output": _TANH}

    def point_names(self, layer):
        return ["input_matmul", "recurrent_matmul", "pre_activation", "output"]

    def cell_call(self, cell, points):
        return simple_rnn_call(cell, points)
