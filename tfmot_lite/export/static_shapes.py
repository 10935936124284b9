"""Reshapes the converter can store as constants: `batch_free_shapes()`.

With the batch size left free (as every export here leaves it), two common
Keras reshapes read the batch size at run time:

* `Dense`, and `ops.matmul` of an input of rank > 2 by a matrix: Keras'
  TensorFlow backend calls `tf.tensordot`, which reshapes the input to
  `[prod(tf.shape(x)[:-1]), k]` and back;
* `Reshape` and `Flatten`: `reshape(x, (ops.shape(x)[0],) + target)`.

The converter keeps that arithmetic as SHAPE, GATHER or STRIDED_SLICE,
REDUCE_PROD, PACK and CONCATENATION operators on int32 tensors feeding a
RESHAPE. XNNPACK takes none of them, nor a RESHAPE whose shape is computed,
so each such reshape ends one delegate partition and starts another, with
the shape arithmetic in LiteRT's built-in kernels between (EfficientNetB0:
17 partitions, one more per squeeze-and-excite block; ConvNeXtTiny: 73, two
more per Dense over pixels).

Inside `batch_free_shapes()` the same reshapes name the batch size -1:
the size -1 resolves to is the batch size the runtime shape read, so the
values are the same, and the converter stores constant shapes. The context
swaps the two functions of Keras' TensorFlow backend that build them
(`numpy.matmul`, `numpy.reshape`) and puts them back on exit; it is entered
only while `convert.py` traces a model for the converter.
"""

import contextlib


def _is_static(dims):
    return all(isinstance(d, int) and d > 0 for d in dims)


def _matmul(tf, keras_matmul):
    def dense(x):  # a dense TensorFlow tensor (Keras handles the rest)
        return tf.is_tensor(x) and not isinstance(x, tf.SparseTensor)

    def matmul(x1, x2):
        if (dense(x1) and dense(x2) and x2.shape.rank == 2
                and x1.shape.rank is not None and x1.shape.rank > 2
                and x1.dtype == x2.dtype and x1.dtype.is_floating
                and _is_static(x1.shape.as_list()[1:]) and _is_static(x2.shape.as_list())):
            inner, units = x1.shape[-1], x2.shape[-1]
            product = tf.matmul(tf.reshape(x1, [-1, inner]), x2)
            return tf.reshape(product, [-1, *x1.shape.as_list()[1:-1], units])
        return keras_matmul(x1, x2)

    return matmul


def _reshape(tf, keras_reshape):
    def reshape(x, newshape):
        if (isinstance(newshape, (tuple, list)) and len(newshape) > 1
                and tf.is_tensor(newshape[0]) and newshape[0].shape.rank == 0
                and _is_static(newshape[1:])):
            newshape = (-1, *newshape[1:])
        return keras_reshape(x, newshape)

    return reshape


@contextlib.contextmanager
def batch_free_shapes(tf):
    """Within the block, Keras' TensorFlow backend writes the batch-sized
    reshapes above with -1 for the batch size."""
    try:
        from keras.src.backend.tensorflow import numpy as backend_numpy

        keras_matmul, keras_reshape = backend_numpy.matmul, backend_numpy.reshape
    except (ImportError, AttributeError):
        # Another Keras layout: the export works with run-time shapes (and
        # tests/export/test_static_shapes.py fails, saying so).
        yield
        return
    backend_numpy.matmul = _matmul(tf, keras_matmul)
    backend_numpy.reshape = _reshape(tf, keras_reshape)
    try:
        yield
    finally:
        backend_numpy.matmul, backend_numpy.reshape = keras_matmul, keras_reshape
