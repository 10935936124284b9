"""`strip_clustering_cqat`: remove the cluster state from a CQAT/PCQAT model.

A CQAT model carries, per kernel, trainable centroids, fixed cluster
indices (and a sparsity mask for PCQAT). After training they are no longer
needed: the kernel they describe is written into the layer's own variable
and the layer keeps its plain QAT quantizers, so the result converts to the
same int8 model, is smaller to save, and can be trained further as plain QAT.
"""

import keras

from tfmot_lite.core import graph
from tfmot_lite.experimental.combine.quantizers import PreservingQuantizer
from tfmot_lite.experimental.combine.transforms import ClusterPreserve
from tfmot_lite.quantization.config import Default8BitQuantizeConfig
from tfmot_lite.quantization.conv_bn_folding import QuantizeConvBatchNorm
from tfmot_lite.quantization.wrapper import QuantizeWrapper


def _bake(owner, transform, kernel):
    """Writes `transform(kernel)` (inference) into `kernel`."""
    state = transform.find_state(owner.weights, kernel.shape)
    kernel.assign(keras.ops.convert_to_numpy(transform(kernel, False, state)))


def _copy_matching(source, target):
    """Copies `source`'s weights into `target`'s, matched by path within
    the layer."""
    def key(variable):
        return variable.path.split("/", 1)[-1]

    values = {key(v): v for v in source.weights}
    for variable in target.weights:
        if key(variable) in values:
            variable.assign(keras.ops.copy(values[key(variable)].value))


def _strip_wrapper(wrapper):
    config = wrapper.quantize_config
    quantizer = getattr(config, "weight_quantizer", None)
    if not (isinstance(config, Default8BitQuantizeConfig)
            and isinstance(quantizer, PreservingQuantizer)
            and isinstance(quantizer.transform, ClusterPreserve)):
        return wrapper
    layer = wrapper.layer
    _bake(wrapper, quantizer.transform, layer.kernel)
    plain = config.__class__.from_config(config.get_config())
    plain.weight_quantizer = quantizer.quantizer
    stripped = wrapper.__class__(layer, plain, name=wrapper.name)
    stripped.build_from_config(wrapper.get_build_config())
    _copy_matching(wrapper, stripped)
    return stripped


def _strip_fused(fused):
    if not isinstance(fused.kernel_transform, ClusterPreserve):
        return fused
    _bake(fused, fused.kernel_transform, fused.conv.kernel)
    stripped = QuantizeConvBatchNorm(
        fused.conv, fused.batch_norm, fused.activation, fused.num_bits_weight,
        fused.num_bits_activation, fused.per_axis, kernel_transform=None, name=fused.name,
    )
    stripped.build_from_config(fused.get_build_config())
    _copy_matching(fused, stripped)
    return stripped


def strip_clustering_cqat(to_strip):
    """Removes the cluster-preservation state of a CQAT or PCQAT model.

    Returns a copy of `to_strip` (nested models included) in which every
    quantized layer trained with `Default8BitClusterPreserveQuantizeScheme`
    keeps its quantization (ranges included) but not its centroids, cluster
    indices and sparsity mask: its kernel holds the clustered values the
    CQAT model computed. The copy predicts exactly as `to_strip` does in
    inference and converts to the same int8 model; `to_strip` is not
    modified.

    Raises:
      ValueError: if `to_strip` is not a Keras layer or a Sequential /
        Functional model.
    """
    graph.check_rewritable(to_strip)

    def replace(layer):
        if isinstance(layer, QuantizeWrapper):
            return _strip_wrapper(layer)
        if isinstance(layer, QuantizeConvBatchNorm):
            return _strip_fused(layer)
        return layer

    return graph.rewrite(to_strip, replace)
