"""Integer activation ranges of zero width, and what LiteRT does with them.

A layer that outputs only zeros on the calibration data (a dead ReLU) or
during quantization-aware training gets the range [0, 0]; the converter
writes a stand-in scale of about 1e-8 for it. Every value such a tensor
holds is the zero point, but a layer reading it does not compute what the
Keras model computes: its int32 bias is stored in units of the input scale
times the weight scale, so a bias beyond `2**31` such units saturates
(a VGG16 that had not learned: its second fully connected layer read such
a tensor, units of 1.4e-12, every bias beyond 0.003 clipped there, outputs
up to 223 steps off the Keras model's). LiteRT's reference kernels
run such a model, but LiteRT's XNNPACK delegate, which is applied by default, cannot
always prepare it, and where it cannot it may abort the process (a double
free in LiteRT 2.x) instead of raising. `check_ranges` finds such tensors
after conversion and, only then, tries XNNPACK in a child process: a model
it cannot prepare is an error naming the tensors, one it can is a warning.
"""

import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np

from tfmot_lite.atomic_file import write_bytes_atomic

DEGENERATE_SCALE = 1e-7


def degenerate_activations(flatbuffer):
    """Names of the integer activation tensors (outputs of an operator)
    whose scale is below `DEGENERATE_SCALE`."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_content=bytes(flatbuffer),
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    computed = {i for op in interpreter._get_ops_details() for i in op["outputs"]}
    return [
        t["name"] for t in interpreter.get_tensor_details()
        if t["index"] in computed and t["dtype"] in (np.int8, np.int16)
        and 0 < t["quantization"][0] < DEGENERATE_SCALE
    ]


def xnnpack_prepares(flatbuffer):
    """Whether LiteRT with its default XNNPACK delegate prepares the model,
    tried in a child process (it may abort rather than raise)."""
    with tempfile.TemporaryDirectory(prefix="tfmot_lite_probe_") as directory:
        path = os.path.join(directory, "model.tflite")
        write_bytes_atomic(path, bytes(flatbuffer))
        done = subprocess.run(
            [sys.executable, "-c",
             "import sys; from ai_edge_litert.interpreter import Interpreter; "
             "Interpreter(model_path=sys.argv[1]).allocate_tensors()", path],
            capture_output=True, timeout=600)
    return done.returncode == 0


def check_ranges(flatbuffer):
    """Raises a ValueError when the model has zero-width integer ranges that
    XNNPACK cannot prepare; warns when it has some that it can."""
    names = degenerate_activations(flatbuffer)
    if not names:
        return
    listed = ", ".join(f"'{n}'" for n in names[:5]) + (" ..." if len(names) > 5 else "")
    why = (f"these tensors were always 0 while calibrating or training, so their "
           f"integer range is [0, 0] (scale below {DEGENERATE_SCALE:g}): {listed}")
    if not xnnpack_prepares(flatbuffer):
        raise ValueError(
            f"The converted model cannot run on LiteRT's default XNNPACK delegate: "
            f"{why}. Calibrate with inputs that make those layers output nonzero "
            "values, or remove the layers that never do (a dead ReLU)."
        )
    warnings.warn(
        f"{why[0].upper()}{why[1:]}. LiteRT runs the model, but these layers "
        "carry no information, and a layer reading them computes with its bias "
        "saturated: check the calibration data or remove them.",
        stacklevel=3,
    )
