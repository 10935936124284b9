"""Keeping TensorFlow's native log lines off the user's terminal.

Imported first by `tfmot_lite/__init__.py`: `import tfmot_lite` loads Keras
and TensorFlow with their start-up banners (oneDNN notice, CPU feature
guard, absl pre-init warning) silenced. Set `TFMOT_LITE_TF_LOGS=1` to see
them. Errors still raise as Python exceptions.

TensorFlow prints oneDNN notices, absl warnings and converter statistics
from C++ straight to file descriptor 2, where neither `TF_CPP_MIN_LOG_LEVEL`
nor Python's `logging` reach all of them. `silenced_stderr()` points fd 2 at
a scratch file for the duration of a block (importing TensorFlow, running the
converter) and restores it afterwards; Python exceptions still propagate.
"""

import contextlib
import os
import sys
import tempfile


def quiet_environment():
    """Sets the log-level variables TensorFlow reads at import time (the
    CLI and the demo call this; a library import leaves them alone)."""
    # 3: errors too. A GPU build of TensorFlow on a machine without CUDA
    # logs "failed call to cuInit" at ERROR level; real failures still
    # raise as Python exceptions, which the CLI prints in one line.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")


@contextlib.contextmanager
def silenced_stderr():
    """Sends everything written to fd 2 inside the block to a scratch file."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        fd = 2
    sys.stderr.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), fd)
        try:
            yield
        finally:
            try:
                sys.stderr.flush()
            except Exception:  # noqa: BLE001 - never mask the real error
                pass
            os.dup2(saved, fd)
            os.close(saved)


def import_quietly():
    """Imports Keras (and, on its TensorFlow backend, TensorFlow) with
    native log lines silenced,
    unless they are already imported or `TFMOT_LITE_TF_LOGS=1`."""
    if os.environ.get("TFMOT_LITE_TF_LOGS") == "1" or "tensorflow" in sys.modules:
        return
    with silenced_stderr():
        # Keras imports TensorFlow itself when it is the backend; on JAX or
        # PyTorch, tfmot_lite needs it only for export and TF fast paths.
        import keras  # noqa: F401


def import_tensorflow():
    """Imports TensorFlow with its start-up log lines silenced, and turns
    its Python-side loggers down to errors. Returns the `tensorflow` module."""
    if "tensorflow" in sys.modules or os.environ.get("TFMOT_LITE_TF_LOGS") == "1":
        import tensorflow as tf
    else:
        with silenced_stderr():
            import tensorflow as tf
    import logging

    tf.get_logger().setLevel(logging.ERROR)
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:  # pragma: no cover - absl ships with TensorFlow
        pass
    return tf
