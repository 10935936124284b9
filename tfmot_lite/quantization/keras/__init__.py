"""Public QAT API, with the names and signatures of `tfmot.quantization.keras`.

```python
import tfmot_lite as tfmot

qat = tfmot.quantization.keras.quantize_model(model)
qat.compile(...)
qat.fit(...)
converter = tf.lite.TFLiteConverter.from_keras_model(qat)
converter.optimizations = [tf.lite.Optimize.DEFAULT]
int8_model = converter.convert()
```
"""

from tfmot_lite.quantization.config import (
    Default8BitQuantizeConfig,
    NoOpQuantizeConfig,
    OutputQuantizeConfig,
    QuantizeConfig,
)
from tfmot_lite.quantization.conv_bn_folding import QuantizeBatchNorm, QuantizeConvBatchNorm
from tfmot_lite.quantization.keras import default_8bit, experimental, quantizers
from tfmot_lite.quantization.quantize import (
    quantize_annotate_layer,
    quantize_annotate_model,
    quantize_apply,
    quantize_model,
    quantize_scope,
    strip_quantization,
)
from tfmot_lite.quantization.registry import Default8BitQuantizeRegistry, QuantizeRegistry
from tfmot_lite.quantization.layout import (
    Default8BitQuantizeLayoutTransform,
    QuantizeLayoutTransform,
)
from tfmot_lite.quantization.scheme import (
    Default16x8QuantizeScheme,
    DefaultNBitQuantizeScheme,
    Default8BitQuantizeScheme,
    QuantizeScheme,
)
from tfmot_lite.quantization.wrapper import (
    QuantizeAnnotate,
    QuantizeLayer,
    QuantizeOperation,
    QuantizeWrapper,
    QuantizeWrapperV2,
)

__all__ = [
    "Default16x8QuantizeScheme",
    "Default8BitQuantizeConfig",
    "Default8BitQuantizeLayoutTransform",
    "Default8BitQuantizeRegistry",
    "Default8BitQuantizeScheme",
    "DefaultNBitQuantizeScheme",
    "NoOpQuantizeConfig",
    "OutputQuantizeConfig",
    "QuantizeAnnotate",
    "QuantizeConfig",
    "QuantizeBatchNorm",
    "QuantizeConvBatchNorm",
    "QuantizeLayer",
    "QuantizeLayoutTransform",
    "QuantizeOperation",
    "QuantizeRegistry",
    "QuantizeScheme",
    "QuantizeWrapper",
    "QuantizeWrapperV2",
    "default_8bit",
    "experimental",
    "quantize_annotate_layer",
    "quantize_annotate_model",
    "quantize_apply",
    "quantize_model",
    "quantize_scope",
    "quantizers",
    "strip_quantization",
]
