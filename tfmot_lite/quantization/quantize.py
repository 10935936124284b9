"""`quantize_model`, `quantize_annotate_layer/model`, `quantize_apply`, `quantize_scope`."""

import keras
from keras import tree

from tfmot_lite import graph
from tfmot_lite.quantization import config as config_lib
from tfmot_lite.quantization import quantizers as quantizers_lib
from tfmot_lite.quantization.fused import QuantizeBatchNorm, QuantizeConvBatchNorm
from tfmot_lite.quantization.scheme import Default8BitQuantizeScheme, QuantizeScheme
from tfmot_lite.quantization.wrapper import (
    QuantizeAnnotate,
    QuantizeLayer,
    QuantizeOperation,
    QuantizeWrapper,
    QuantizeWrapperV2,
)

QUANTIZED = (
    QuantizeWrapper, QuantizeConvBatchNorm, QuantizeBatchNorm, QuantizeLayer, QuantizeOperation
)
# Raw operations of a Functional graph (`x + 3.0`) that compute new values
# and get an output quantizer, and those that keep their input's scale.
OUTPUT_OPS = {"Add", "Subtract", "Multiply", "Divide", "TrueDivide", "Maximum", "Minimum"}
PASS_OPS = {"Reshape", "Transpose", "ExpandDims", "Squeeze", "GetItem", "Identity"}


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
    _check_model(to_quantize, "quantize_model")
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
    _check_model(to_annotate, "quantize_annotate_model")

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
    _check_model(model, "quantize_apply")
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
        "Default8BitQuantizeConfig": config_lib.Default8BitQuantizeConfig,
        "OutputQuantizeConfig": config_lib.OutputQuantizeConfig,
        "NoOpQuantizeConfig": config_lib.NoOpQuantizeConfig,
    }
    for name in ("LastValueQuantizer", "MovingAverageQuantizer", "AllValuesQuantizer",
                 "FixedQuantizer", "DepthwiseKernelQuantizer", "ChannelKernelQuantizer"):
        objects[name] = getattr(quantizers_lib, name)
    for extra in args:
        objects.update(extra)
    return keras.saving.custom_object_scope(objects)


# -- implementation ---------------------------------------------------------


def _leaf_layers(model):
    """`(path, op)` for every leaf layer and raw operation, nested models included."""
    if not graph.is_graph_model(model):
        yield model.name, model
        return
    ops = model.layers
    if not isinstance(model, keras.Sequential):
        ops = [op for op in model._operations if not isinstance(op, keras.layers.InputLayer)]
    for op in ops:
        if graph.is_graph_model(op):
            for path, leaf in _leaf_layers(op):
                yield f"{op.name}/{path}", leaf
        else:
            yield op.name, op


def _is_raw_op(op):
    return not isinstance(op, keras.layers.Layer)


def _supported(op, registry):
    if _is_raw_op(op):
        return type(op).__name__ in OUTPUT_OPS | PASS_OPS
    return registry.supports(op)


def _check_model(model, fn):
    if not isinstance(model, keras.Model) or not graph.is_graph_model(model):
        raise ValueError(
            f"`{fn}` expects a Keras Sequential or Functional model; got "
            f"{type(model).__name__}. Subclassed models cannot be rewritten: "
            "build the model functionally, or annotate layers with "
            "`quantize_annotate_layer` when you construct it."
        )
    if not model.built or not getattr(model, "inputs", None):
        raise ValueError(
            f"Model '{model.name}' is not built: give it an Input (or call "
            f"`build`) before `{fn}`."
        )


def _unsupported_error(names):
    return ValueError(
        "Cannot quantize these layers (no default quantization for them):\n"
        + "\n".join(f"  - {n}" for n in names)
        + "\nEither annotate each with a QuantizeConfig that says how to quantize "
        "it (`quantize_annotate_layer(layer, quantize_config=MyConfig())` inside "
        "`quantize_annotate_model(model)`, then `quantize_apply`), or quantize "
        "only chosen layers: wrap them with `quantize_annotate_layer`, call "
        "`quantize_apply`, and the rest of the model stays float."
    )


def _quantize(model, scheme, annotated_only):
    if not isinstance(scheme, QuantizeScheme):
        raise ValueError(f"`scheme` must be a QuantizeScheme; got {scheme!r}.")
    registry = scheme.get_quantize_registry()
    transform = scheme.get_layout_transformer()

    # Validate everything before building anything.
    unsupported, already = [], []
    for path, layer in _leaf_layers(model):
        if isinstance(layer, QUANTIZED):
            already.append(path)
            continue
        if isinstance(layer, QuantizeAnnotate):
            if layer.quantize_config is None and not registry.supports(layer.layer):
                unsupported.append(f"{path} ({layer.layer.__class__.__name__})")
        elif not annotated_only and not _supported(layer, registry):
            unsupported.append(f"{path} ({layer.__class__.__name__})")
    if already:
        raise ValueError(
            "These layers are already quantized: " + ", ".join(already)
            + ". Quantize the original float model instead."
        )
    if unsupported:
        raise _unsupported_error(unsupported)

    def eligible(layer):
        if isinstance(layer, QuantizeAnnotate):
            return layer.quantize_config is None
        return not annotated_only

    plan = transform.find_fusions(model, eligible)
    bits_w = getattr(scheme, "num_bits_weight", 8)
    bits_a = getattr(scheme, "num_bits_activation", 8)
    per_axis = not getattr(scheme, "disable_per_axis", False)

    def clone(layer):
        role, fusion = plan.get(id(layer), (None, None))
        if role == "folded":
            inner = _inner(layer)
            return keras.layers.Identity(name=inner.name)
        if role == "head":
            conv = graph.copy_layer(_inner(fusion.conv))
            bn = graph.copy_layer(_inner(fusion.batch_norm))
            get_transform = getattr(registry, "get_weight_transform", None)
            return QuantizeConvBatchNorm(
                conv, bn, fusion.activation, bits_w, bits_a, per_axis,
                weight_transform=get_transform(conv) if get_transform else None,
                name=f"quant_{conv.name}",
            )
        if _is_raw_op(layer):
            copy = layer.__class__.from_config(layer.get_config())
            if annotated_only or type(layer).__name__ not in OUTPUT_OPS:
                return copy
            return QuantizeOperation(
                copy, quantizers_lib.MovingAverageQuantizer(num_bits=bits_a)
            )
        quantize = True
        config = None
        if isinstance(layer, QuantizeAnnotate):
            config = layer.quantize_config
            layer = layer.layer
        elif annotated_only:
            quantize = False
        copy = graph.copy_layer(layer)
        if not quantize:
            return copy
        if config is None:
            if isinstance(copy, keras.layers.SeparableConv2D):
                return _split_separable(copy, registry)
            if isinstance(copy, keras.layers.BatchNormalization) and _bn_axis_last(copy):
                return QuantizeBatchNorm(copy, bits_a)
            if isinstance(copy, keras.layers.Rescaling) and _has_offset(copy):
                return _split_rescaling(copy, registry)
            if isinstance(copy, keras.layers.Normalization) and copy.built:
                return _split_normalization(copy, registry)
            config = registry.get_quantize_config(copy)
            if config is None:
                return copy
        return QuantizeWrapperV2(copy, config)

    input_quantizer = quantizers_lib.MovingAverageQuantizer(num_bits=bits_a)
    return _rebuild(model, clone, annotated_only, input_quantizer)


def _inner(layer):
    return layer.layer if isinstance(layer, QuantizeAnnotate) else layer


def _split_separable(sep, registry):
    """SeparableConv2D -> DepthwiseConv2D + 1x1 Conv2D (what TFLite runs)."""
    cfg = sep.get_config()
    depthwise = keras.layers.DepthwiseConv2D(
        kernel_size=cfg["kernel_size"], strides=cfg["strides"], padding=cfg["padding"],
        depth_multiplier=cfg["depth_multiplier"], data_format=cfg["data_format"],
        dilation_rate=cfg["dilation_rate"], use_bias=False, name=f"{sep.name}_depthwise",
    )
    pointwise = keras.layers.Conv2D(
        filters=cfg["filters"], kernel_size=1, use_bias=cfg["use_bias"],
        activation=cfg["activation"], data_format=cfg["data_format"],
        name=f"{sep.name}_pointwise",
    )
    shape = sep.get_build_config()["input_shape"]
    depthwise.build(shape)
    depthwise.kernel.assign(sep.depthwise_kernel)
    pointwise.build(depthwise.compute_output_shape(shape))
    pointwise.kernel.assign(sep.pointwise_kernel)
    if cfg["use_bias"]:
        pointwise.bias.assign(sep.bias)
    return keras.Sequential(
        [
            keras.Input(batch_shape=shape),
            QuantizeWrapperV2(depthwise, registry.get_quantize_config(depthwise)),
            QuantizeWrapperV2(pointwise, registry.get_quantize_config(pointwise)),
        ],
        name=sep.name,
    )


def _bn_axis_last(bn):
    shape = (bn.get_build_config() or {}).get("input_shape")
    axis = bn.axis[0] if isinstance(bn.axis, (list, tuple)) else bn.axis
    return axis == -1 or (shape is not None and axis == len(shape) - 1)


def _has_offset(layer):
    return any(float(v) != 0.0 for v in keras.ops.convert_to_numpy(
        keras.ops.reshape(keras.ops.convert_to_tensor(layer.offset, "float32"), (-1,))))


def _split_affine(layer, scale, offset, registry):
    """`x * scale + offset` runs as MUL then ADD in TFLite; each gets a range.

    Returns a Sequential of two quantized Rescaling layers named after
    `layer` (a Rescaling with an offset, or an adapted Normalization).
    """
    shape = (layer.get_build_config() or {}).get("input_shape")
    mul = keras.layers.Rescaling(scale, name=f"{layer.name}_scale")
    add = keras.layers.Rescaling(1.0, offset=offset, name=f"{layer.name}_offset")
    layers = [keras.Input(batch_shape=shape)] if shape else []
    layers += [
        QuantizeWrapperV2(mul, registry.get_quantize_config(mul)),
        QuantizeWrapperV2(add, registry.get_quantize_config(add)),
    ]
    return keras.Sequential(layers, name=layer.name)


def _split_rescaling(layer, registry):
    cfg = layer.get_config()
    return _split_affine(layer, cfg["scale"], cfg["offset"], registry)


def _split_normalization(layer, registry):
    import numpy as np

    ops = keras.ops
    std = ops.convert_to_numpy(
        ops.maximum(ops.sqrt(layer.variance), keras.backend.epsilon())
    ).astype("float32")
    mean = ops.convert_to_numpy(layer.mean).astype("float32")
    if layer.invert:
        scale, offset = std, mean
    else:
        scale = (1.0 / std).astype("float32")
        offset = (-mean * scale).astype("float32")
    return _split_affine(layer, np.asarray(scale), np.asarray(offset), registry)


def _is_float(t):
    return keras.backend.is_float_dtype(t.dtype)


def _rebuild(model, clone, annotated_only, input_quantizer):
    """Clones `model` through `clone`, inserting QuantizeLayers."""
    if isinstance(model, keras.Sequential):
        body = keras.models.clone_model(model, clone_function=clone, recursive=True)
        shape = model.inputs[0].shape
        layers = [keras.Input(batch_shape=shape, dtype=model.inputs[0].dtype)]
        first = body.layers[0] if body.layers else None
        if _is_float(model.inputs[0]) and (
            not annotated_only or isinstance(first, QUANTIZED[:3])
        ):
            layers.append(QuantizeLayer(_copy_quantizer(input_quantizer), name="quantize_layer"))
        return keras.Sequential(layers + list(body.layers), name=model.name)

    new_inputs = tree.map_structure(
        lambda t: keras.Input(
            batch_shape=t.shape, dtype=t.dtype, name=t._keras_history.operation.name
        ),
        model._inputs_struct,
    )
    top_ids = {id(t) for t in tree.flatten(new_inputs)}
    cache = {}

    def call_function(layer, *args, **kwargs):
        quantized_consumer = isinstance(layer, QUANTIZED[:3]) or (
            graph.is_graph_model(layer) and not annotated_only
        )

        def maybe_quantize(t):
            if not isinstance(t, keras.KerasTensor) or not _is_float(t):
                return t
            if annotated_only:
                producer = t._keras_history.operation
                needed = quantized_consumer and not isinstance(producer, QUANTIZED) and (
                    id(t) in top_ids or not isinstance(producer, keras.layers.InputLayer)
                )
            else:
                needed = id(t) in top_ids
            if not needed:
                return t
            if id(t) not in cache:
                cache[id(t)] = QuantizeLayer(_copy_quantizer(input_quantizer))(t)
            return cache[id(t)]

        args = tree.map_structure(maybe_quantize, args)
        kwargs = tree.map_structure(maybe_quantize, kwargs)
        if isinstance(layer, QuantizeOperation):
            tensors = [a for a in args if isinstance(a, keras.KerasTensor)]
            layer.constants = [
                [i, a] for i, a in enumerate(args) if not isinstance(a, keras.KerasTensor)
            ]
            args = tensors
        if "mask" in kwargs and kwargs["mask"] is None:
            # Recorded by Keras for the original layer; a replacement (a
            # fused layer, an Identity) need not accept it.
            kwargs.pop("mask")
        return layer(*args, **kwargs)

    return keras.models.clone_model(
        model,
        input_tensors=new_inputs,
        clone_function=clone,
        call_function=call_function,
        recursive=True,
    )


def _copy_quantizer(quantizer):
    return quantizer.__class__.from_config(quantizer.get_config())
