"""`quantize_model`, `quantize_annotate_layer/model`, `quantize_apply`, `quantize_scope`.

How a model is quantized (`_quantize`): validate every layer against the
scheme's registry; the scheme's layout transform rewrites layers
(`QuantizeLayoutTransform.apply`); one `graph.rewrite` then wraps each layer
in the `QuantizeWrapperV2` its config asks for and inserts a `QuantizeLayer`
where float values enter the quantized part. `strip_quantization` (our
addition) turns a QAT model back into a float one with the trained
fake-quantized weights baked in.
"""

import keras

from tfmot_lite.core import entry, graph, layer_kinds, techniques
from tfmot_lite.quantization import config as config_lib
from tfmot_lite.quantization import quantizers as quantizers_lib
from tfmot_lite.quantization.conv_bn_folding import (
    QuantizeBatchNorm,
    QuantizeConvBatchNorm,
)
from tfmot_lite.quantization.registry import PASS_OPS
from tfmot_lite.quantization.same_scale import (
    QuantizeAveragePooling,
    QuantizeBilinearResize,
    QuantizeSameScale,
)
from tfmot_lite.quantization.scheme import Default8BitQuantizeScheme, QuantizeScheme
from tfmot_lite.quantization.wrapper import (
    QuantizeAnnotate,
    QuantizeLayer,
    QuantizeOperation,
    QuantizeWrapper,
    QuantizeWrapperV2,
    call_operation,
)

# Layers that compute on quantized values: a float input reaching them
# gets a `QuantizeLayer` under `quantize_apply`.
_QUANTIZED_CONSUMERS = (QuantizeWrapper, QuantizeConvBatchNorm, QuantizeBatchNorm)
_ALLOWED = (techniques.QAT, techniques.QAT_ANNOTATION)  # refused by _validate


def quantize_model(to_quantize, quantize_scheme=None):
    """Prepares a whole model for quantization-aware training.

    Every layer is quantized as the scheme's registry says (the TFLite int8
    layout by default), Conv-BatchNorm[-ReLU] chains are folded, and the
    model input is quantized. Train the result as usual; convert it with the
    TFLite converter (`optimizations=[tf.lite.Optimize.DEFAULT]`) to get an
    int8 model that computes what the trained Keras model computes.

    Args:
      to_quantize: a built Sequential or Functional model (nested models are
        quantized too).
      quantize_scheme: a `QuantizeScheme`, `Default8BitQuantizeScheme()` by
        default.

    Returns:
      A new Functional/Sequential model; `to_quantize` is not modified.
    """
    entry.check_model_input(to_quantize, "quantize_model", needs_inputs=True, allowed=_ALLOWED)
    if any(isinstance(layer, QuantizeAnnotate) for _, layer in _leaf_layers(to_quantize)):
        raise ValueError(
            f"Model '{to_quantize.name}' contains annotated layers: use "
            "`quantize_apply(model)` to quantize only those, or `quantize_model` "
            "on a model without annotations."
        )
    return _quantize(to_quantize, quantize_scheme or Default8BitQuantizeScheme(), False)


def quantize_annotate_layer(to_annotate, quantize_config=None):
    """Marks one layer for `quantize_apply` (optionally with its own config).

    Use it while building a model to quantize only some layers (the rest stay
    float), or to quantize a custom layer with a `QuantizeConfig`.
    """
    if not isinstance(to_annotate, keras.layers.Layer) or isinstance(to_annotate, keras.Model):
        raise ValueError(
            "`quantize_annotate_layer` annotates a single Keras layer; got "
            f"{to_annotate!r}. Use `quantize_annotate_model` for models."
        )
    if quantize_config is not None and not isinstance(quantize_config, config_lib.QuantizeConfig):
        raise ValueError(
            f"`quantize_config` for '{to_annotate.name}' must be a QuantizeConfig; "
            f"got {quantize_config!r}."
        )
    return QuantizeAnnotate(to_annotate, quantize_config=quantize_config)


def quantize_annotate_model(to_annotate):
    """Returns a copy of `to_annotate` with every layer annotated.

    Layers already annotated keep their annotation (and config).
    """
    graph.check_model(to_annotate, "quantize_annotate_model", needs_inputs=True)

    def annotate(layer):
        if isinstance(layer, (QuantizeAnnotate, keras.layers.InputLayer)):
            return layer
        return QuantizeAnnotate(layer)

    return graph.rewrite(to_annotate, annotate)


def quantize_apply(model, scheme=None, quantize_scheme=None):
    """Quantizes the annotated layers of `model`; the others stay float.

    A `QuantizeLayer` is placed wherever float values enter a quantized
    layer, and outputs of quantized layers feed float layers as they are.
    """
    scheme = scheme or quantize_scheme or Default8BitQuantizeScheme()
    entry.check_model_input(model, "quantize_apply", needs_inputs=True, allowed=_ALLOWED)
    if not any(isinstance(layer, QuantizeAnnotate) for _, layer in _leaf_layers(model)):
        raise ValueError(
            f"Model '{model.name}' has no annotated layers. Annotate layers with "
            "`quantize_annotate_layer` / `quantize_annotate_model`, or call "
            "`quantize_model` to quantize every layer."
        )
    return _quantize(model, scheme, True)


def quantize_scope(*args):
    """A custom-object scope with the quantization classes and `args` (dicts).

    tfmot-lite's classes are registered with Keras, so loading needs no scope;
    use it for your own QuantizeConfigs / Quantizers that are not registered.
    """
    objects = {
        "QuantizeAnnotate": QuantizeAnnotate,
        "QuantizeWrapper": QuantizeWrapper,
        "QuantizeWrapperV2": QuantizeWrapperV2,
        "QuantizeLayer": QuantizeLayer,
        "QuantizeConvBatchNorm": QuantizeConvBatchNorm,
        "QuantizeBatchNorm": QuantizeBatchNorm,
        "QuantizeOperation": QuantizeOperation,
        "QuantizeSameScale": QuantizeSameScale,
        "QuantizeAveragePooling": QuantizeAveragePooling,
        "QuantizeBilinearResize": QuantizeBilinearResize,
        "Default8BitQuantizeConfig": config_lib.Default8BitQuantizeConfig,
        "OutputQuantizeConfig": config_lib.OutputQuantizeConfig,
        "ActivationQuantizeConfig": config_lib.ActivationQuantizeConfig,
        "NoOpQuantizeConfig": config_lib.NoOpQuantizeConfig,
    }
    for name in ("LastValueQuantizer", "MovingAverageQuantizer", "AllValuesQuantizer",
                 "FixedQuantizer", "DepthwiseKernelQuantizer", "ChannelKernelQuantizer"):
        objects[name] = getattr(quantizers_lib, name)
    for extra in args:
        objects.update(extra)
    return keras.saving.custom_object_scope(objects)


def strip_quantization(model):
    """A float copy of a QAT model (our addition; tfmot has none).

    Each `QuantizeWrapper` becomes its layer with the fake-quantized weights
    baked in, each fused Conv-BatchNorm the folded convolution with its
    fake-quantized kernel, each `QuantizeLayer` an Identity. The result
    computes what the QAT model computes at inference, minus activation
    quantization; `model` is not modified.
    """
    graph.check_model(model, "strip_quantization", needs_inputs=True)
    return techniques.strip(model, techniques.QAT)


# -- implementation ---------------------------------------------------------


def _leaf_layers(model):
    """`(path, op)` for every leaf layer and raw operation, nested models included."""
    return graph.iter_layers(model, operations=True)


def _is_raw_op(op):
    return not isinstance(op, keras.layers.Layer)


def _unsupported_error(names):
    return ValueError(
        "Cannot quantize these layers (no default quantization for them):\n"
        + "\n".join(f"  - {n}" for n in names)
        + "\nEither annotate each with a QuantizeConfig that says how to quantize "
        "it (`quantize_annotate_layer(layer, quantize_config=MyConfig())` inside "
        "`quantize_annotate_model(model)`, then `quantize_apply`), or quantize "
        "only chosen layers: wrap them with `quantize_annotate_layer`, call "
        "`quantize_apply`, and the rest of the model stays float "
        "(`tfmot_lite.clone_model(model, lambda l: quantize_annotate_layer(l) if "
        "isinstance(l, keras.layers.Dense) else l)` also reaches the layers inside "
        "subclassed layers and KerasHub models)."
    )


def _validate(model, registry, annotated_only):
    """Raises one ValueError listing every layer that cannot be quantized.

    Pruning/clustering wrappers were refused before this, by
    `entry.check_model_input` (with the strip call that removes them)."""
    unsupported, already = [], []
    for path, layer in _leaf_layers(model):
        if techniques.technique_of(layer) is techniques.QAT:
            already.append(path)
        elif isinstance(layer, QuantizeAnnotate):
            if layer.quantize_config is None and not registry.supports(layer.layer):
                unsupported.append(f"{path} ({layer.layer.__class__.__name__})")
        elif annotated_only or isinstance(layer, keras.layers.InputLayer):
            continue
        elif _is_raw_op(layer):
            if not registry.supports_operation(layer):
                unsupported.append(f"{path} ({layer.__class__.__name__})")
        elif not registry.supports(layer):
            unsupported.append(f"{path} ({layer.__class__.__name__})")
    if already:
        raise ValueError(
            "These layers are already quantized: " + ", ".join(already)
            + ". Quantize the original float model instead."
        )
    if unsupported:
        raise _unsupported_error(unsupported)


def _layer_quantize_map(model, annotated_only):
    """tfmot's `{layer name: {"quantize_config": config or None}}`."""
    quantize_map = {}
    for _, layer in _leaf_layers(model):
        if isinstance(layer, QuantizeAnnotate):
            quantize_map[layer.name] = {"quantize_config": layer.quantize_config}
        elif not annotated_only and not _is_raw_op(layer):
            quantize_map[layer.name] = {"quantize_config": None}
    return quantize_map


def _is_float(t):
    return keras.backend.is_float_dtype(t.dtype)


def _quantize(model, scheme, annotated_only):
    if not isinstance(scheme, QuantizeScheme):
        raise ValueError(
            f"`quantize_scheme` must be a QuantizeScheme instance; got {scheme!r}."
        )
    registry = scheme.get_quantize_registry()
    _validate(model, registry, annotated_only)
    transformed, _ = scheme.get_layout_transformer().apply(
        model, _layer_quantize_map(model, annotated_only)
    )

    def wrap(layer):
        if isinstance(layer, QuantizeAnnotate):
            config = layer.quantize_config or registry.get_quantize_config(layer.layer)
            if config and layer.output_fused:
                config = config_lib.without_output(config, layer.layer) or config
            return QuantizeWrapperV2(layer.layer, config) if config else layer.layer
        if techniques.technique_of(layer) is techniques.QAT or annotated_only:
            return layer
        if _is_raw_op(layer):
            quantizer = registry.get_operation_quantizer(layer)
            return QuantizeOperation(layer, quantizer) if quantizer else layer
        config = registry.get_quantize_config(layer)
        return QuantizeWrapperV2(layer, config) if config else layer

    cache = {}
    names = _QuantizeLayerNames(model)
    # Annotated mode: the (rewritten) tensors that already carry int8
    # values, so that no QuantizeLayer requantizes them.
    quantized = set()

    def call(layer, args, kwargs, model_inputs):
        quantized_consumer = isinstance(layer, _QUANTIZED_CONSUMERS) or (
            graph.is_graph_model(layer) and (not annotated_only or _all_quantized(layer))
        )

        def maybe_quantize(t):
            if not isinstance(t, keras.KerasTensor) or not _is_float(t):
                return t
            if annotated_only:
                producer = t._keras_history.operation
                needed = quantized_consumer and id(t) not in quantized and (
                    id(t) in model_inputs
                    or not isinstance(producer, keras.layers.InputLayer)
                )
            else:
                needed = id(t) in model_inputs
            if not needed:
                return t
            if id(t) not in cache:
                cache[id(t)] = QuantizeLayer(
                    registry.get_input_quantizer(), name=names.next()
                )(t)
                quantized.add(id(cache[id(t)]))
            return cache[id(t)]

        args = keras.tree.map_structure(maybe_quantize, args)
        kwargs = keras.tree.map_structure(maybe_quantize, kwargs)
        if annotated_only and _is_raw_op(layer) and _int8_inputs((args, kwargs), quantized):
            # A raw operation (`x + y` in a Functional model: ConvNeXt's
            # residuals) cannot be annotated; between int8 tensors it is
            # quantized as `quantize_model` quantizes it.
            quantizer = registry.get_operation_quantizer(layer)
            layer = QuantizeOperation(layer, quantizer) if quantizer else layer
        if isinstance(layer, QuantizeOperation):
            outputs = call_operation(layer, args, kwargs)
            args = tuple(a for a in args if isinstance(a, keras.KerasTensor))
        else:
            outputs = layer(*args, **kwargs)
        if annotated_only and _carries_int8(layer, (args, kwargs), quantized):
            quantized.update(id(t) for t in keras.tree.flatten(outputs)
                             if isinstance(t, keras.KerasTensor))
        return outputs

    return graph.rewrite(transformed, wrap, call=call, operations=True)


def _int8_inputs(inputs, quantized):
    """Whether every float tensor in `inputs` (a structure) is int8 already
    (`quantized`: ids of such tensors), and there is one."""
    floats = [t for t in keras.tree.flatten(inputs)
              if isinstance(t, keras.KerasTensor) and _is_float(t)]
    return bool(floats) and all(id(t) in quantized for t in floats)


def _carries_int8(layer, inputs, quantized):
    """Whether `layer`'s outputs are int8 in the .tflite: it quantizes them,
    or it keeps its input's scale (pooling, padding, reshapes, the Identity
    a folded BatchNorm or activation leaves) and every float input is int8
    already (`quantized`: ids of such tensors)."""
    if getattr(layer, "keeps_input_scale", False):
        passes = True
    elif _quantized_output(layer):
        return True
    elif _is_raw_op(layer):
        passes = type(layer).__name__ in PASS_OPS
    else:
        passes = isinstance(layer, keras.layers.Identity) or (
            layer_kinds.quantize_kind(layer) == "pass")
    return passes and _int8_inputs(inputs, quantized)


def _all_quantized(model):
    """Whether every layer of a nested model is quantized (a layout split
    left nested inside a user's Sequential, or a nested model annotated
    whole): its inputs are then quantized where they enter it."""
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    return bool(layers) and all(
        isinstance(layer, _QUANTIZED_CONSUMERS) or graph.is_graph_model(layer)
        and _all_quantized(layer) for layer in layers)


def _quantized_output(layer):
    """Whether `layer`'s outputs are quantized already."""
    return techniques.technique_of(layer) is techniques.QAT or (
        graph.is_graph_model(layer) and _all_quantized(layer))


class _QuantizeLayerNames:
    """`quantize_layer`, `quantize_layer_1`, ...: counted per call, so the
    same model quantized twice gets the same layer names (Keras' own names
    count per process), skipping names the model already uses."""

    def __init__(self, model):
        self.taken = {layer.name for _, layer in graph.iter_layers(model, operations=True)}
        self.count = 0

    def next(self):
        while True:
            name = "quantize_layer" + (f"_{self.count}" if self.count else "")
            self.count += 1
            if name not in self.taken:
                self.taken.add(name)
                return name
