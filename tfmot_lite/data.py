"""Datasets for the demo, tutorials, tests and benchmarks.

* `digits()`: scikit-learn's bundled handwritten digits (1,797 real 8x8
  images, shipped with the package, no download), upsampled to 32x32x3 so
  that CNNs built for CIFAR-sized input train on them.
* `cifar10()`: CIFAR-10 through TensorFlow Datasets, split and normalised as
  the TensorFlow pruning guides do (needs a machine that can download).
"""

import numpy as np


def digits(image_size=32, channels=3, test_fraction=0.2, seed=0):
    """Returns `(x_train, y_train), (x_test, y_test)` as float32 in [0, 1].

    Each 8x8 digit is upsampled by pixel repetition to `image_size`
    (a multiple of 8) and repeated over `channels`; labels are int32 0..9.
    The split is stratified-free but seeded, so it is the same every run.
    """
    from sklearn.datasets import load_digits

    if image_size % 8:
        raise ValueError(f"`image_size` must be a multiple of 8; got {image_size}.")
    data = load_digits()
    images = (data.images / 16.0).astype("float32")
    scale = image_size // 8
    images = images.repeat(scale, axis=1).repeat(scale, axis=2)
    images = np.repeat(images[..., None], channels, axis=-1)
    labels = data.target.astype("int32")
    order = np.random.default_rng(seed).permutation(len(images))
    images, labels = images[order], labels[order]
    n_test = int(round(len(images) * test_fraction))
    return (images[n_test:], labels[n_test:]), (images[:n_test], labels[:n_test])


def cifar10(batch_size=128):
    """CIFAR-10 as `(train, val, test), info` batched `tf.data` pipelines.

    Splits `train[:90%]`, `train[90%:]` and `test`; images scaled to [0, 1];
    each split cached, the training split shuffled, all prefetched.
    """
    import tensorflow as tf
    import tensorflow_datasets as tfds

    (train, val, test), info = tfds.load(
        "cifar10",
        split=["train[:90%]", "train[90%:]", "test"],
        as_supervised=True,
        with_info=True,
    )

    def normalize(image, label):
        return tf.image.convert_image_dtype(image, tf.float32), label

    def prepare(ds, shuffle=None):
        ds = ds.map(normalize, num_parallel_calls=tf.data.AUTOTUNE).cache()
        if shuffle:
            ds = ds.shuffle(shuffle)
        return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    # The split's size; `info.splits` is empty under tfds.testing.mock_data.
    n_train = int(train.cardinality())
    if n_train < 0:
        n_train = info.splits["train[:90%]"].num_examples
    return (prepare(train, shuffle=n_train), prepare(val), prepare(test)), info


def to_numpy(dataset):
    """Concatenates a batched `(x, y)` tf.data pipeline into numpy arrays."""
    xs, ys = zip(*((np.asarray(x), np.asarray(y)) for x, y in dataset))
    return np.concatenate(xs), np.concatenate(ys)
