"""Quantization-aware training (tfmot's `quantization` package).

What lives where:

* `keras/`: the public API under tfmot's names (`quantize_model`, ...).
* `quantize.py`: the entry points; validates, runs the scheme's layout
  transform, then one `graph.rewrite` that wraps layers and inserts
  `QuantizeLayer`s; `strip_quantization`.
* `scheme.py`: `QuantizeScheme`s: a layout transform plus a registry.
* `layout.py`: `QuantizeLayoutTransform`s, the layer rewrites (Conv-BatchNorm
  folding, SeparableConv2D split, ...).
* `registry.py`: which `QuantizeConfig` each Keras layer gets.
* `config.py`: `QuantizeConfig` (tfmot's contract) and the default configs.
* `wrapper.py`: `QuantizeWrapper` (a `WeightTransformWrapper`),
  `QuantizeAnnotate`, `QuantizeLayer`, `QuantizeOperation`.
* `conv_bn_folding.py`: `QuantizeConvBatchNorm` (Conv-BatchNorm folded as the
  converter folds it), `QuantizeBatchNorm`.
* `same_scale.py`: `QuantizeSameScale` (a pooling or padding a Concatenate
  and another layer read, with a range of its own), `QuantizeAveragePooling`
  (any other average pooling, rounded into the range of the layer writing
  its input), `QuantizeBilinearResize` (a bilinear UpSampling2D, the same).
* `quantizers.py`: the fake-quantization math and the quantizers.
* `integer_grid.py`: a range's step and zero point, a constant's integers
  and a bias's int32, as the converter stores them.
* `kernel_arithmetic.py`: what the device's int8 kernels compute on those
  integers (requantization, ADD, HARD_SWISH, average and resize rounding).
* `integer_inference.py`: the QAT layers' inference on those integers.
"""

from tfmot_lite.quantization import keras  # noqa: F401
