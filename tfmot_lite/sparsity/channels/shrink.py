"""`shrink`: physically remove pruned channels from a model.

A channel is removed when the channel analysis (`coupling.py`) shows that it
is exactly zero wherever it flows: every producer of its class has a zero
kernel column and bias, every BatchNormalization on it a zero gamma and beta,
every DepthwiseConv a zero bias. That is what `PruneChannels` masks (and what
`strip_pruning` bakes), so the shrunk model predicts what the masked model
predicts: the removed channels only ever added zeros.

Removing a channel gives its producer fewer filters (units), slices the
input rows of the layers that consume it (Conv/Dense kernels, a
SeparableConv's depthwise kernel and pointwise rows), and slices
BatchNormalization statistics and DepthwiseConv kernels and biases. The new
model is built by `graph.rewrite`; the input model is not modified.
"""

import keras
import numpy as np
from keras import ops

from tfmot_lite.core import graph, layer_kinds, techniques
from tfmot_lite.sparsity.channels import coupling, roles
from tfmot_lite.sparsity.channels.summary import (
    LayerChange,
    ShrinkSummary,
    count_macs,
    count_params,
)


def _np(variable):
    return ops.convert_to_numpy(variable)


def _zero(array):
    return bool(np.all(array == 0))


def _dead_classes(analysis):
    """Prunable classes whose channels are exactly zero everywhere."""
    dead = np.array(
        [analysis.prunable_class(k) for k in range(analysis.num_classes)], dtype=bool
    )
    for item in analysis.producers:
        layer = item.layer
        kernel = _np(roles.output_kernel(layer))
        columns = kernel.reshape(-1, kernel.shape[-1])
        bias = _np(layer.bias) if layer.use_bias else np.zeros(kernel.shape[-1])
        for j, k in enumerate(item.classes):
            if not (_zero(columns[:, j]) and bias[j] == 0):
                dead[k] = False
    for item in analysis.channelwise:
        layer = item.layer
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma = _np(layer.gamma)
            beta = _np(layer.beta) if layer.center else np.zeros_like(gamma)
            alive = (gamma != 0) | (beta != 0)
        else:
            alive = (
                _np(layer.bias) != 0 if layer.use_bias
                else np.zeros(len(item.classes), bool)
            )
        dead[item.classes[alive]] = False
    # Every producer keeps at least one channel.
    for item in analysis.producers:
        if dead[item.classes].all():
            dead[item.classes[0]] = False
    return dead


def _slice_producer(layer, out_idx, in_idx):
    """`{weight name: array}` for a producer keeping `out_idx` of its output
    channels and `in_idx` of its input channels (None: all)."""
    arrays = {}
    if roles.is_separable(layer):
        depthwise = _np(layer.depthwise_kernel)
        pointwise = _np(layer.pointwise_kernel)
        if in_idx is not None:
            mult = depthwise.shape[-1]
            depthwise = depthwise[..., in_idx, :]
            rows = (np.asarray(in_idx)[:, None] * mult + np.arange(mult)).ravel()
            pointwise = pointwise[..., rows, :]
        arrays["depthwise_kernel"] = depthwise
        arrays["pointwise_kernel"] = pointwise[..., out_idx]
    else:
        kernel = _np(layer.kernel)
        if in_idx is not None:
            kernel = np.take(kernel, in_idx, axis=kernel.ndim - 2)
        arrays["kernel"] = kernel[..., out_idx]
    if layer.use_bias:
        arrays["bias"] = _np(layer.bias)[out_idx]
    return arrays


def _slice_channelwise(layer, idx):
    if isinstance(layer, keras.layers.BatchNormalization):
        return {w.name: _np(w)[idx] for w in layer.weights}
    arrays = {"kernel": _np(layer.kernel)[..., idx, :]}
    if layer.use_bias:
        arrays["bias"] = _np(layer.bias)[idx]
    return arrays


def _plain(model):
    """`model` without pruning wrappers (masks baked into the weights)."""
    others = [
        f"{path} ({technique.name})" for path, technique in techniques.found_in(model)
        if technique is not techniques.PRUNING
    ]
    if others:
        raise ValueError(
            f"Cannot shrink model '{model.name}': it holds layers of other "
            "optimization techniques "
            f"({', '.join(others[:5])}). Shrink the channel-pruned model first, "
            "then apply quantization or clustering to the result."
        )
    if techniques.PRUNING in techniques.in_model(model):
        return techniques.strip(model, techniques.PRUNING)
    return model


def shrink(model, return_summary=False):
    """Returns a plain Keras model with the pruned channels removed.

    Args:
      model: a model trained with `prune_channels` (wrapped, or stripped
        with `strip_pruning`).
      return_summary: also return a `ShrinkSummary` (channels per layer,
        parameters and MACs before and after).

    Returns:
      The smaller model (and the summary). Its predictions equal the masked
      model's up to float rounding; `model` is not modified.
    """
    graph.check_model(model, "shrink", needs_inputs=True, why=coupling.NEEDS_INPUTS)
    plain = _plain(model)
    analysis = coupling.analyze(plain, strict=False)
    keep = ~_dead_classes(analysis)

    def indices(classes):
        idx = np.flatnonzero(keep[classes])
        return None if len(idx) == len(classes) else idx

    new_weights, configs, changes = {}, {}, []
    inputs = analysis.inputs
    for item in analysis.producers:
        layer = item.layer
        out_idx = indices(item.classes)
        consumer = inputs.get(id(layer))
        in_idx = indices(consumer.classes) if consumer is not None else None
        changes.append(LayerChange(
            item.path, type(layer).__name__, len(item.classes),
            len(item.classes) if out_idx is None else len(out_idx),
        ))
        if out_idx is None and in_idx is None:
            continue
        if out_idx is None:
            out_idx = np.arange(len(item.classes))
        config = layer.get_config()
        config[layer_kinds.channel_width_field(layer)] = len(out_idx)
        configs[layer.name] = (type(layer), config)
        new_weights[layer.name] = _slice_producer(layer, out_idx, in_idx)
    for item in analysis.channelwise:
        idx = indices(item.classes)
        if idx is not None:
            configs[item.layer.name] = (type(item.layer), item.layer.get_config())
            new_weights[item.layer.name] = _slice_channelwise(item.layer, idx)
    # Weightless layers that now see fewer channels are rebuilt unbuilt.
    g = analysis.graph
    for op in g.ops:
        layer = graph.core_layer(op.layer)
        if layer.name in configs:
            continue
        for t in op.inputs:
            classes = analysis.classes_of_tensor.get(t)
            if classes is not None and not keep[classes].all():
                configs[layer.name] = (type(layer), layer.get_config())
                break

    graph.check_unique_names(plain, "shrink", names=configs)

    def replace(layer):
        if layer.name not in configs:
            return layer
        cls, config = configs[layer.name]
        return cls.from_config(config)

    shrunk = graph.rewrite(plain, replace)
    for _, layer in graph.iter_layers(shrunk):
        arrays = new_weights.get(layer.name)
        if arrays is None:
            continue
        for weight in layer.weights:
            weight.assign(arrays[weight.name].astype(weight.dtype))
    if not return_summary:
        return shrunk
    summary = ShrinkSummary(
        layers=changes,
        params_before=count_params(plain),
        params_after=count_params(shrunk),
        macs_before=count_macs(plain),
        macs_after=count_macs(shrunk),
        intact=[(g.layers, g.reason) for g in analysis.groups if not g.prunable],
    )
    return shrunk, summary
