"""Keras 3 recurrent layers, made convertible: unrolled at export time.

Keras 3's LSTM, GRU and SimpleRNN run their time loop as a `while_loop`
over TensorLists on TensorFlow, which the TFLite converter rejects
(ConverterError on TensorList ops); tf_keras' LSTM was rewritten into
TFLite's fused UNIDIRECTIONAL_SEQUENCE_LSTM, Keras 3's is not. With
`unroll=True` the same layer computes the same values as a chain of
FULLY_CONNECTED / LOGISTIC / TANH / MUL / ADD operators, one set per time
step, which converts in every mode (float, dynamic range, int8, 16x8).

`unrolled_for_export` gives the converter a copy of the model in which each
recurrent layer (alone, in `Bidirectional`, in stacked cells, inside
subclassed layers) is unrolled, with the same weights. The user's model is
not changed. Unrolling needs a sequence length known when the model is
built; a layer without one gets an error that says what to change.
"""

import warnings

import keras
import numpy as np

from tfmot_lite.core import graph


def _rolled(layer):
    """Whether `layer` holds a recurrent loop the converter cannot take
    (also inside a technique's wrapper: a QAT LSTM)."""
    if isinstance(layer, keras.layers.Wrapper) and not isinstance(
            layer, (keras.layers.Bidirectional, keras.layers.TimeDistributed)):
        return _rolled(layer.layer)
    if isinstance(layer, keras.layers.Bidirectional):
        return _rolled(layer.forward_layer) or _rolled(layer.backward_layer)
    if isinstance(layer, keras.layers.TimeDistributed):
        return _rolled(layer.layer)
    return isinstance(layer, keras.layers.RNN) and not layer.unroll


def needs_unrolling(model):
    """Whether `model` holds a recurrent layer that runs a TensorList loop."""
    return any(_rolled(layer) for _, layer in graph.iter_layers(model))


def _with_unroll(config):
    """`config` with every nested `"unroll"` setting turned on."""
    if isinstance(config, dict):
        return {
            key: True if key == "unroll" else _with_unroll(value)
            for key, value in config.items()
        }
    if isinstance(config, list):
        return [_with_unroll(item) for item in config]
    return config


def _sequence_length(layer):
    shapes = list((getattr(layer, "_build_shapes_dict", None) or {}).values())
    shape = shapes[0] if shapes else None
    if isinstance(shape, (list, tuple)) and shape and isinstance(shape[0], (list, tuple)):
        shape = shape[0]  # (sequence, initial states)
    return None if shape is None or len(shape) < 2 else shape[1]


def _check_unrollable(path, layer):
    while isinstance(layer, keras.layers.Wrapper) and not isinstance(
            layer, (keras.layers.Bidirectional, keras.layers.TimeDistributed)):
        layer = layer.layer
    inner = layer.forward_layer if isinstance(layer, keras.layers.Bidirectional) else layer
    if getattr(inner, "stateful", False):
        raise ValueError(
            f"Layer '{path}' ({type(layer).__name__}) is stateful: its state lives "
            "in variables between calls, which a .tflite model does not keep. "
            "Export a copy built with `stateful=False` (same weights: "
            "`new.set_weights(model.get_weights())`) and pass the state as inputs."
        )
    if _sequence_length(layer) is None:
        raise ValueError(
            f"Layer '{path}' ({type(layer).__name__}) runs over sequences of "
            "unknown length. Keras 3 recurrent layers convert to TFLite only "
            "unrolled, one set of operators per time step, which needs the "
            "length: build the model for it (`keras.Input((timesteps, features))`) "
            "and copy the weights over (`new.set_weights(model.get_weights())`)."
        )


def unrolled_for_export(model):
    """`model`, or a copy of it with every recurrent layer unrolled
    (`unroll=True`, same weights) when it holds one that is not."""
    if not needs_unrolling(model):
        return model
    for path, layer in graph.iter_layers(model):
        if _rolled(layer):
            _check_unrollable(path, layer)

    def unroll(copy):
        if not _rolled(copy):
            return copy
        return graph.copy_layer(copy, config=_with_unroll(copy.get_config()))

    return graph.rewrite(model, unroll)


def warn_gru_16x8(model):
    """Warns about each GRU that TensorFlow 2.21's 16x8 quantizer breaks.

    Unrolled, a GRU with `reset_after=True` (Keras' default) multiplies the
    zero initial state by its recurrent kernel in the first step, whose
    range calibrates to [0, 0]; with a nonzero recurrent bias, the 16x8
    converter then stores the recurrent kernel, shared by every step, as
    all zero codes (measured: top-1 agreement 0.33 with Keras on the
    digits GRU of tutorials/recurrent_models.py; int8 keeps a separate copy
    for that step and is right).
    """
    for path, layer in graph.iter_layers(model):
        gru = getattr(layer, "forward_layer", layer)
        cell = getattr(gru, "cell", None)
        if not isinstance(cell, keras.layers.GRUCell) or not cell.reset_after:
            continue
        if not cell.use_bias or not np.any(keras.ops.convert_to_numpy(cell.bias)[1]):
            continue
        warnings.warn(
            f"Layer '{path}' (GRU, reset_after=True): TensorFlow's 16x8 quantizer "
            "stores its recurrent kernel as zeros when the recurrent bias is "
            "nonzero, and the .tflite will not compute what the model computes. "
            "Export it as 'int8', or build it with `reset_after=False`.",
            stacklevel=3,
        )
