"""Input checks shared by every entry point: arguments and weights.

Each check raises a ValueError that names the argument (or the layer and
weight) and says how to fix it, before anything is built, so that a bad call
leaves nothing half-applied and the user's model untouched.

* Argument validators (`check_int`, `check_fraction`, `check_positive`,
  `check_m_by_n`, `check_block_size`) are what schedules, wrappers and
  entry points call on their arguments: a float where an integer is meant
  (`frequency=2.5`), a string where a number is meant
  (`ConstantSparsity("0.5", 0)`) are errors, not silent conversions.
* `check_finite_weights`: a NaN or inf weight would turn into NaN masks,
  centroids or quantization ranges, so wrapping refuses it.

What a whole model must be (a graph model, built, with no other
technique's layers) is `core/entry.py`'s part.
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


def check_finite_weights(to_wrap, fn):
    """Every weight of every layer in `to_wrap` is finite (no NaN or inf).

    `to_wrap` is a layer, a list of layers or a model (nested models
    included). Pruning would rank NaN magnitudes, clustering would place
    NaN centroids and QAT would learn `[nan, nan]` ranges, silently; so the
    first non-finite weight raises a ValueError naming its layer and weight.
    """
    for path, layer in graph.iter_named(to_wrap):
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


def problems_error(title, problems, fix):
    """One ValueError for every layer or weight that cannot take a
    technique: `title`, a line per problem, then the `fix`."""
    return ValueError(f"{title}:\n" + "\n".join(f"  - {p}" for p in problems) + f"\n{fix}")
