"""Named training-time fast paths: TensorFlow kernels where they beat the
`keras.ops` form (`ops`), and the BatchNormalization that uses one
(`batch_norm`). Every other backend takes the `keras.ops` path."""
