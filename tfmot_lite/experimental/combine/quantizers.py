"""`PreservingQuantizer`: a weight transform, then a weight quantizer.

The QuantizeConfig of a layer names one quantizer per weight; the
preserving schemes put this one in its place, so that

    q(W) = quantizer(transform(W))

where `transform` keeps the pruned zeros or the clusters (see
`transforms.py`) and `quantizer` is the one the default 8-bit registry
would have used (symmetric int8, per channel for convolutions). Nothing
else in QAT changes: ranges, activations, outputs and the converter see the
same graph as in plain QAT, with a structured kernel.
"""

import keras

from tfmot_lite.quantization.quantizers import Quantizer

_register = keras.saving.register_keras_serializable(package="tfmot_lite")


@_register
class PreservingQuantizer(Quantizer):
    """`quantizer(transform(W))`.

    Args:
      transform: a `WeightTransform` (`SparsityPreserve`, `ClusterPreserve`).
      quantizer: the weight `Quantizer` applied to the transformed kernel.
    """

    def __init__(self, transform, quantizer):
        self.transform = transform
        self.quantizer = quantizer

    def build(self, tensor_shape, name, layer):
        return {
            "transform": self.transform.build(tensor_shape, name, layer),
            "quantizer": self.quantizer.build(tensor_shape, name, layer),
        }

    def __call__(self, inputs, training, weights, **kwargs):
        transformed = self.transform(inputs, training, weights["transform"])
        return self.quantizer(transformed, training, weights["quantizer"], **kwargs)

    def kernel_max_abs(self, kernel, weights):
        """The inner quantizer's `max|w|` of the transformed kernel (None
        where it has none): what the int32 bias and integer inference read
        (`LastValueQuantizer.kernel_max_abs`)."""
        inner = getattr(self.quantizer, "kernel_max_abs", None)
        if inner is None:
            return None
        return inner(self.transform(kernel, False, weights["transform"]), weights["quantizer"])

    def unscaled(self, value):
        """The layer's own weight from a quantized one, where the inner
        quantizer folds a factor in (`attention.ScaledQuantizer`)."""
        inner = getattr(self.quantizer, "unscaled", None)
        return inner(value) if inner else value

    @property
    def num_bits(self):
        return getattr(self.quantizer, "num_bits", 8)

    def get_config(self):
        return {
            "transform": keras.saving.serialize_keras_object(self.transform),
            "quantizer": keras.saving.serialize_keras_object(self.quantizer),
        }

    @classmethod
    def from_config(cls, config):
        return cls(
            keras.saving.deserialize_keras_object(config["transform"]),
            keras.saving.deserialize_keras_object(config["quantizer"]),
        )

    def __hash__(self):
        return hash((type(self).__name__, type(self.transform).__name__))
