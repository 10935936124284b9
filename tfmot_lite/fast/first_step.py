"""The first `fit` on TensorFlow, its training step traced once.

Keras' TensorFlow trainer, without a distribution strategy, leaves the
optimizer unbuilt until the training step is first traced
(`_maybe_symbolic_build`: "defer building ... for backwards
compatibility"). The trace then creates the optimizer's variables, and
`tf.function` traces the whole step a second time, now without creating
any: the first `fit` pays two traces of the forward pass, the gradients and
the optimizer's update. Building the optimizer first, on the model's
trainable variables, is what Keras does itself under a distribution
strategy (`Trainer._symbolic_build`) and in `BackupAndRestore` before it
restores an optimizer's state; the step is then traced once. The JAX and
PyTorch trainers build it before their first step already.

`build_optimizer(model)` does that where it applies; `UpdatePruningStep`
calls it, and `BuildOptimizerFirst` is the callback for any other `fit`
(QAT, clustering, plain models):

    model.fit(x, y, callbacks=[tfmot_lite.fast.BuildOptimizerFirst()])
"""

import keras


def build_optimizer(model):
    """Builds `model.optimizer` on `model.trainable_variables` if `fit`
    would otherwise build it inside its first traced step: the TensorFlow
    backend, no distribution strategy, an optimizer not yet built, every
    layer built, and `fit` under way (`model.train_function` made, as
    `fit` does before its callbacks' `on_train_begin`; a custom training
    loop that applies the optimizer to other variables is left alone).
    Returns whether it built the optimizer."""
    optimizer = getattr(model, "optimizer", None)
    if (keras.backend.backend() != "tensorflow" or optimizer is None or optimizer.built
            or getattr(model, "train_function", None) is None
            or getattr(model, "_distribute_strategy", None) is not None
            or not all(layer.built for layer in model._flatten_layers())):
        return False
    variables = model.trainable_variables
    if not variables:
        return False
    optimizer.build(variables)
    return True


class BuildOptimizerFirst(keras.callbacks.Callback):
    """Builds the model's optimizer when `fit` begins, so that TensorFlow
    traces the training step once, not twice (`build_optimizer`): the first
    `fit` of a QAT MobileNetV2 (alpha 0.5, 96x96) took 12.1 s against
    19.1 s (`benchmarks/trace_time.py --first-fit`; docs/perf.md, "The
    first fit, traced once"). No effect on the JAX and PyTorch backends,
    under a distribution strategy, or once the optimizer is built."""

    def on_train_begin(self, logs=None):
        build_optimizer(self.model)
