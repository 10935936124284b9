"""Input checks shared by every entry point: arguments and weights.

Each check raises a ValueError that names the argument (or the layer and
weight) and says how to fix it, before anything is built, so that a bad call
leaves nothing half-applied and the user's model untouched.

* Argument validators (`check_int`, `check_fraction`, `check_positive`,
  `check_m_by_n`, `check_pruning_policy`) are what schedules, wrappers and
  entry points call on their arguments: a float where an integer is meant
  (`frequency=2.5`), a string where a number is meant
  (`ConstantSparsity("0.5", 0)`) are errors, not silent conversions.
* `check_finite_weights`: a NaN or inf weight would turn into NaN masks,
  centroids or quantization ranges, so wrapping refuses it.
* `check_graph_model`, `check_not_wrapped`: what each technique's entry point
  accepts (Sequential/Functional models; no other technique's wrappers left
  in the model); `check_layer_not_wrapped`, `check_no_wrapper_kwargs`: a
  single layer is not wrapped twice, wrapper arguments go with a layer only.
"""

import numbers

import keras
import numpy as np

from tfmot_lite.core import graph


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_int(name, value, minimum=None):
    """`value` as an int; ValueError unless it is an integer >= `minimum`.

    Integral floats (`100.0`) are accepted; `2.5`, `"2"` and booleans are not.
    """
    integral = isinstance(value, numbers.Integral) or (
        isinstance(value, (float, np.floating)) and float(value).is_integer()
    )
    if isinstance(value, (bool, np.bool_)) or not integral:
        raise ValueError(
            f"`{name}` must be an integer"
            + (f" >= {minimum}" if minimum is not None else "")
            + f". Received {name}={value!r}; pass a whole number such as "
            f"{name}={int(value) if _is_number(value) and np.isfinite(value) else 1}."
        )
    if minimum is not None and value < minimum:
        raise ValueError(
            f"`{name}` must be >= {minimum}. Received {name}={value!r}."
        )
    return int(value)


def check_fraction(name, value, inclusive_one=False):
    """`value` as a float in [0, 1) (or [0, 1]); ValueError otherwise."""
    upper = "1]" if inclusive_one else "1)"
    if not _is_number(value) or not np.isfinite(value):
        raise ValueError(
            f"`{name}` must be a number in [0, {upper}: the fraction of weights "
            f"set to zero. Received {name}={value!r} ({type(value).__name__}); "
            f"pass a float such as {name}=0.5."
        )
    if not (0.0 <= value <= 1.0 if inclusive_one else 0.0 <= value < 1.0):
        raise ValueError(
            f"`{name}` must be in [0, {upper}: the fraction of weights set to "
            f"zero. Received {name}={value}; pass a value such as {name}=0.5."
        )
    return float(value)


def check_positive(name, value):
    """`value` as a float > 0; ValueError otherwise."""
    if not _is_number(value) or not np.isfinite(value) or value <= 0:
        raise ValueError(
            f"`{name}` must be a number > 0. Received {name}={value!r}; "
            f"pass for example {name}=3."
        )
    return value


def check_m_by_n(value):
    """`sparsity_m_by_n` as `(m, n)` integers with 0 < m < n, or None."""
    if value is None:
        return None
    hint = "Pass two integers, for example sparsity_m_by_n=(2, 4) (2 zeros in every 4)."
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ValueError(
            f"`sparsity_m_by_n` must be a pair (m, n). Received {value!r}. {hint}"
        )
    m, n = value
    for part, v in (("m", m), ("n", n)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
            raise ValueError(
                f"`sparsity_m_by_n` must hold integers; its {part} is {v!r}. {hint}"
            )
    if not 0 < m < n:
        raise ValueError(
            f"`sparsity_m_by_n` must be (m, n) with 0 < m < n: m zeros in every "
            f"n consecutive weights. Received {tuple(value)}. {hint}"
        )
    return int(m), int(n)


def check_pruning_policy(policy):
    """`pruning_policy` must be None or a `PruningPolicy` instance."""
    from tfmot_lite.sparsity.policy import PruningPolicy

    if policy is not None and not isinstance(policy, PruningPolicy):
        hint = ""
        if isinstance(policy, str) and "xnnpack" in policy.lower():
            hint = " such as tfmot_lite.sparsity.keras.PruneForLatencyOnXNNPack()"
        raise ValueError(
            "`pruning_policy` must be a PruningPolicy instance"
            f"{hint}, or None. Received {policy!r} ({type(policy).__name__})."
        )


def check_graph_model(model, fn):
    """A subclassed model cannot be rewritten: say so, and what to do."""
    if isinstance(model, keras.Model) and not graph.is_graph_model(model):
        raise ValueError(
            f"`{fn}` cannot rewrite '{model.name}', a subclassed model "
            f"({type(model).__name__}): its layers are only known to its own "
            "`call`. Build the model with the Sequential or Functional API, or "
            f"apply `{fn}` to the layers inside it when you construct it."
        )


def _named_layers(obj):
    if isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _named_layers(item)
    elif graph.is_graph_model(obj):
        yield from graph.iter_layers(obj)
    elif isinstance(obj, keras.layers.Layer):
        yield obj.name, obj


def check_finite_weights(to_wrap, fn):
    """Every weight of every layer in `to_wrap` is finite (no NaN or inf).

    `to_wrap` is a layer, a list of layers or a model (nested models
    included). Pruning would rank NaN magnitudes, clustering would place
    NaN centroids and QAT would learn `[nan, nan]` ranges, silently; so the
    first non-finite weight raises a ValueError naming its layer and weight.
    """
    for path, layer in _named_layers(to_wrap):
        for weight in layer.weights:
            values = np.asarray(keras.ops.convert_to_numpy(weight))
            if not np.issubdtype(values.dtype, np.floating) or np.isfinite(values).all():
                continue
            nan = int(np.isnan(values).sum())
            inf = int(np.isinf(values).sum())
            raise ValueError(
                f"Layer '{path}': weight '{weight.path}' has {nan} NaN and {inf} "
                f"infinite value(s) out of {values.size}, so `{fn}` cannot use "
                "it. Fix the weights first: reload them from a checkpoint taken "
                "before training diverged, or replace the bad values (for example "
                "`weight.assign(np.nan_to_num(weight.numpy(), nan=0.0, posinf=0.0, "
                "neginf=0.0))`)."
            )


# Wrappers of one technique that another technique's entry point must not
# see, and the function that removes them.
_STRIP_HINTS = (
    ("tfmot_lite.sparsity.wrapper", "PruneLowMagnitude", "pruned", "strip_pruning"),
    ("tfmot_lite.clustering.wrapper", "ClusterWeights", "clustered", "strip_clustering"),
)


def check_not_wrapped(model, fn):
    """ValueError if `model` still holds pruning or clustering wrappers:
    `fn` (e.g. `quantize_model`) works on plain layers, after strip."""
    import importlib

    for module, cls_name, verb, strip in _STRIP_HINTS:
        cls = getattr(importlib.import_module(module), cls_name)
        wrapped = [
            path for path, layer in _named_layers(model)
            # also under a QuantizeAnnotate (or any Keras Wrapper)
            if isinstance(layer, cls) or isinstance(getattr(layer, "layer", None), cls)
        ]
        if wrapped:
            raise ValueError(
                f"Model '{model.name}' is still {verb}: "
                + ", ".join(f"'{p}'" for p in wrapped)
                + f" ({cls_name}). Call `{strip}(model)` first and pass the "
                f"result to `{fn}`."
            )


def check_layer_not_wrapped(layer, wrapper_class, fn, verb):
    """ValueError if the single layer handed to `fn` (which `verb`s it) is
    already a `wrapper_class`: wrapping twice would stack two wrappers."""
    if isinstance(layer, wrapper_class):
        done, strip = next(
            (done, strip) for _, name, done, strip in _STRIP_HINTS
            if name == wrapper_class.__name__
        )
        raise ValueError(
            f"Layer '{layer.name}' is already {done}. To {verb} it with new "
            f"settings, strip the old wrapper first: `{fn}({strip}(layer), ...)`."
        )


def check_no_wrapper_kwargs(kwargs, gerund):
    """Wrapper arguments (a name, ...) only apply to a single layer."""
    if kwargs:
        raise ValueError(
            f"Unexpected arguments for a model: {sorted(kwargs)}. Wrapper "
            f"arguments such as a name apply when {gerund} a single layer."
        )


def check_ints(**values):
    """`check_int` on each keyword argument (schedule step arguments)."""
    for name, value in values.items():
        check_int(name, value)


def check_block_size(value):
    """`block_size` must be `(rows, cols)` of positive integers."""
    ok = (
        not isinstance(value, (str, bytes)) and hasattr(value, "__len__") and len(value) == 2
        and all(isinstance(b, numbers.Integral) and not isinstance(b, bool) and b >= 1
                for b in value)
    )
    if not ok:
        raise ValueError(
            "`block_size` must be two positive integers (rows, cols), for example "
            f"block_size=(1, 4); (1, 1) prunes single weights. Received {value!r}."
        )


def check_prune_args(block_size, pruning_policy):
    """The `prune_low_magnitude` arguments checked before they are used."""
    check_block_size(block_size)
    check_pruning_policy(pruning_policy)


def check_quantize_input(model, fn):
    """What `quantize_model` / `quantize_apply` need beyond a graph model:
    no pruning/clustering wrappers left, and finite weights."""
    check_not_wrapped(model, fn)
    check_finite_weights(model, fn)
