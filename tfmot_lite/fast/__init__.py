"""Named fast paths: TensorFlow kernels where they beat the `keras.ops`
form (`ops`), the BatchNormalization that uses one (`batch_norm`), and on
JAX eager calls of the integer kernels compiled as one program each
(`compiled`). Every other backend takes the `keras.ops` path as written."""
