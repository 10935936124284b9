"""`tfmot.quantization.keras.quantizers`."""

from tfmot_lite.quantization.quantizers import (  # noqa: F401
    AllValuesQuantizer,
    DepthwiseKernelQuantizer,
    FixedQuantizer,
    LastValueQuantizer,
    MovingAverageQuantizer,
    Quantizer,
    ChannelKernelQuantizer,
    fake_quant,
)
