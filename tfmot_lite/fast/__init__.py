"""Named fast paths: TensorFlow kernels where they beat the `keras.ops`
form (`ops`), the BatchNormalization that uses one (`batch_norm`), and on
JAX eager calls of the integer kernels compiled as one program each
(`compiled`). Every other backend takes the `keras.ops` path as written.
On TensorFlow's `fit`, the optimizer built before the first step, so that
the step is traced once (`first_step`, `BuildOptimizerFirst`)."""

from tfmot_lite.fast.first_step import BuildOptimizerFirst  # noqa: F401
