"""Scalars a traced inference computes once per graph.

A QAT model's inference computes on the device's integers
(`integer_inference.py`), and every layer reading a range derives the same
scalars from it: its step to the converter's precision, its zero point,
its ends (`integer_grid.py`). In a TensorFlow graph each derivation is a
few dozen scalar ops, traced again for every reader: a third of the ops of
a small ViT's inference graph. `memoized` hands the reader the tensors the
first one made in the same graph.

Keys are the arguments' identities (tensors, variables) and plain values,
and a hit needs the very same objects, which the entry holds (so no id is
reused while the graph lives). A tensor stands for one value in its graph,
so a function of tensors is reused as is; a read of variables
(`memoized_read`) only until the graph assigns a range
(`note_range_assignment`), after which the next reader reads again.
Eager calls, and the other backends, compute every time: their values
change between calls, and a JAX trace has no graph to keep them in.
"""

import weakref

import keras

_TABLES = weakref.WeakKeyDictionary()  # graph -> {key: (arguments, result)}
_GENERATION = "generation"


def _table():
    """The current TensorFlow graph's table, or None (eager, other backends)."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    if tf.executing_eagerly():
        return None
    graph = tf.compat.v1.get_default_graph()
    table = _TABLES.get(graph)
    if table is None:
        table = _TABLES[graph] = {_GENERATION: 0}
    return table


def _key(name, arguments):
    return (name,) + tuple(
        a if isinstance(a, (bool, int, float, str, type(None))) else ("id", id(a))
        for a in arguments)


def _lookup(table, key, arguments, compute):
    entry = table.get(key)
    if entry is not None and all(a is b for a, b in zip(entry[0], arguments)):
        return entry[1]
    result = compute()
    table[key] = (arguments, result)
    return result


def memoized(name, arguments, compute):
    """`compute()`, or what it returned for the same `name` and the same
    `arguments` (a tuple of tensors and plain values) earlier in this
    graph."""
    table = _table()
    if table is None:
        return compute()
    return _lookup(table, _key(name, arguments), tuple(arguments), compute)


def memoized_read(name, variables, compute):
    """`compute()`, reading `variables`, or its result from earlier in this
    graph where no range was assigned since."""
    table = _table()
    if table is None:
        return compute()
    key = _key(name, variables) + (_GENERATION, table[_GENERATION])
    return _lookup(table, key, tuple(variables), compute)


def note_range_assignment():
    """A training step assigned a range in this graph: reads memoized before
    it no longer hold (`memoized_read`)."""
    table = _table()
    if table is not None:
        table[_GENERATION] += 1
