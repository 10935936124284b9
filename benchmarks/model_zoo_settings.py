"""What the model zoo runs: its models, its techniques and the learning
rates they train at, and where its pages go (`benchmarks/model_zoo.py`
runs them, `benchmarks/model_zoo_page.py` writes them)."""

import os

import keras

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

TECHNIQUES = ("float", "ptq", "qat", "prune", "cluster", "pqat")
INTEGER = {"ptq", "qat", "pqat"}  # exported int8
QAT = {"qat", "pqat"}  # trained with fake quantization

PAGE, PLOT = "model_zoo.md", "model_zoo.png"  # in --output unless named
DEFAULT_TITLE = "Model zoo: keras.applications end to end"


def all_models():
    """Every model constructor `keras.applications` exports, by name."""
    return sorted(name for name, obj in vars(keras.applications).items()
                  if callable(obj) and name[:1].isupper())


# Adam learning rates of the float baseline. A model without BatchNorm
# does not train at the first of them: VGG16 (96x96, 10 epochs on 1438 digits) predicted
# one class for every image (0.078 test accuracy); at 1e-4 it reached 0.87
# after one epoch.
FLOAT_LEARNING_RATE = 1e-3
FLOAT_LEARNING_RATE_WITHOUT_BATCH_NORM = 1e-4

# Adam learning rates of the fine-tuning steps. A trained model fine-tunes
# at a small rate: at 1e-4, 16 QAT steps cost DenseNet121 (3 epochs, 96x96)
# 4 points of Keras accuracy (0.953 vs 0.984 with no step at all, 0.992 at
# 1e-5). Pruning to 50% in one step needs the larger rate to recover.
LEARNING_RATES = {"qat": 1e-5, "prune": 1e-4, "cluster": 1e-5}
# The QAT rate (QAT, and PQAT's QAT steps) of results cached before it was
# recorded.
EARLIER_QAT_RATE = 1e-4


def rates_text(results):
    """The fine-tuning rates the page's results were measured with."""
    qat = sorted({r.get("qat_learning_rate", EARLIER_QAT_RATE) for r in results
                  if r.get("technique") in QAT})
    qat_text = " or ".join(f"{rate:g}" for rate in qat) or f"{LEARNING_RATES['qat']:g}"
    return (f"{qat_text} for QAT, {LEARNING_RATES['prune']:g} for pruning "
            f"(PQAT's pruning too), {LEARNING_RATES['cluster']:g} for clustering")
