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

import keras

from tfmot_lite.core import graph


def _rolled(layer):
    """Whether `layer` holds a recurrent loop the converter cannot take."""
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
