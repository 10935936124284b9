"""tfmot-lite: training-time model optimization for Keras 3.

Drop-in for the TensorFlow Model Optimization Toolkit's Keras API:

    import tfmot_lite as tfmot
    tfmot.sparsity.keras.prune_low_magnitude(model, ...)
"""

from tfmot_lite import quiet as _quiet

_quiet.import_quietly()  # TensorFlow's start-up banner off the terminal.

from tfmot_lite import sparsity  # noqa: F401, E402
from tfmot_lite import clustering  # noqa: F401, E402
from tfmot_lite import quantization  # noqa: F401, E402
from tfmot_lite import experimental  # noqa: F401, E402
from tfmot_lite import distillation  # noqa: F401, E402
from tfmot_lite import fast  # noqa: F401, E402
from tfmot_lite.clone import clone_model  # noqa: F401, E402

__version__ = "0.1.0"
