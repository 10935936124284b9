"""Distillation on the backend named by KERAS_BACKEND (run in a subprocess
by test_backends.py): prune, cluster and QAT students trained against a
float teacher with BatchNorm; prints one JSON line of results."""

import json

import keras
import numpy as np

import tfmot_lite as tfmot
from tfmot_lite.example_models import build_cnn

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x = rng.normal(size=(48, 32, 32, 3)).astype("float32")
y = rng.integers(0, 10, size=48)
loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

teacher = build_cnn()
teacher.compile("adam", loss)
teacher.fit(x, y, epochs=1, batch_size=16, verbose=0)
teacher_weights = [np.array(w) for w in teacher.get_weights()]
sk = tfmot.sparsity.keras


def train(student, callbacks=(), temperature=3.0, alpha=0.7):
    distiller = tfmot.distillation.distill(student, teacher, temperature, alpha)
    distiller.compile(keras.optimizers.Adam(1e-3), loss)
    history = distiller.fit(x, y, epochs=3, batch_size=16, verbose=0,
                            callbacks=list(callbacks))
    return distiller, history.history["loss"]


pruned = sk.prune_low_magnitude(
    teacher, pruning_schedule=sk.ConstantSparsity(0.5, 0, frequency=1))
distiller, prune_loss = train(pruned, [sk.UpdatePruningStep()])
stripped = sk.strip_pruning(distiller.student)
kernels = [np.asarray(layer.kernel) for layer in stripped.layers if hasattr(layer, "kernel")]

# The loss the step minimizes, from its parts, on this backend.
logits = np.asarray(distiller.student(x[:16], training=False))
teacher_logits = np.asarray(teacher(x[:16], training=False))
computed = float(distiller.compute_loss(
    x=x[:16], y=y[:16], y_pred=keras.ops.convert_to_tensor(logits), training=True))
task = float(loss(y[:16], logits))

clustered = tfmot.clustering.keras.cluster_weights(teacher, number_of_clusters=8)
_, cluster_loss = train(clustered)
qat = tfmot.quantization.keras.quantize_model(teacher)
_, qat_loss = train(qat)

print(json.dumps({
    "backend": keras.backend.backend(),
    "teacher_unchanged": all(
        np.array_equal(a, np.asarray(b)) for a, b in zip(teacher_weights, teacher.get_weights())),
    "sparsity": [float(np.mean(k == 0)) for k in kernels],
    "prune_loss": prune_loss,
    "cluster_loss": cluster_loss,
    "qat_loss": qat_loss,
    "computed": computed,
    "task": task,
    "logits": logits.tolist(),
    "teacher_logits": teacher_logits.tolist(),
    "trainable": len(distiller.trainable_variables),
    "student_trainable": len(distiller.student.trainable_variables),
}))
