"""The one path from a user's argument to a wrapped layer, list or model.

`prune_low_magnitude`, `cluster_weights` and `prune_channels` each describe
themselves in a `Plan` and call `wrap(to_wrap, plan)`; `quantize_model` and
`quantize_apply` run the same model checks (`check_model_input`) before their
scheme rewrites the model. In order, before anything is built:

1. dispatch: a list of layers, a single layer, or a Sequential/Functional
   model (nested models included); anything else is a ValueError naming the
   argument;
2. the checks, each once: finite weights; another technique's layers
   (`core/techniques.py`) must be stripped first; the plan's own verdict on
   every layer, all offending layers in one error (`Plan.check_layers`,
   which decides each layer's support once and remembers it); layers already
   wrapped by this technique are kept when their settings are the ones asked
   for and are an error otherwise;
3. the rewrite: `graph.rewrite` with `Plan.replace(copy, original)`. The
   input is never modified.
"""

import keras

from tfmot_lite.core import checks, graph, sublayers, techniques
from tfmot_lite.core.weight_wrapper import carry_input_shape


class Plan:
    """What one technique tells the entry path.

    Attributes:
      technique: its row in `core/techniques.py`.
      entry: the public function's name, for messages.
      argument: the name of its first argument (`to_prune`).
      gerund: what it does, for messages ("pruning").
      needs_inputs: whole models must know their inputs; `needs_inputs_why`
        says what for.
      keeps_own_wrappers: layers it already wrapped with the same settings
        are kept (tfmot's rule); False makes any of them an error.
    """

    technique = None
    entry = ""
    argument = "to_wrap"
    gerund = "wrapping"
    needs_inputs = False
    needs_inputs_why = ""
    keeps_own_wrappers = True

    def check_call(self, kind):
        """Raises if the call's arguments do not fit `kind` ('layer', 'list'
        or 'model'): an option that only applies to models, say."""

    def check_layers(self, named_layers):
        """Raises one ValueError listing every layer that cannot take the
        technique; remembers each layer's verdict for `replace`."""

    def settings(self, wrapper):
        """The settings `wrapper` (of this technique) was made with."""
        raise NotImplementedError

    def requested(self, wrapper):
        """The settings this call would give `wrapper`'s layer."""
        raise NotImplementedError

    def wrap_layer(self, copy, original, **kwargs):
        """What a single layer becomes: `copy` (of the user's `original`)
        wrapped, with the wrapper's own arguments."""
        raise NotImplementedError

    def prepare(self, model):
        """Whole-model work before the rewrite (a policy's check, an analysis)."""

    def replace(self, copy, original):
        """What stands in the new model for `copy` (of `original`)."""
        raise NotImplementedError

    def finish(self, model):
        """The rewritten model, completed (links between wrappers, say)."""
        return model


def wrap(to_wrap, plan, **kwargs):
    """Applies `plan` to a layer, a list of layers or a graph model."""
    if isinstance(to_wrap, (list, tuple)):
        plan.check_call("list")
        for item in to_wrap:
            graph.check_rewritable(item, plan.entry, plan.argument)
            _check_single_layer(item, plan)
        checks.check_finite_weights(to_wrap, plan.entry)
        plan.check_layers(list(graph.iter_named(to_wrap)))
        return [_wrap_single(item, plan, kwargs) for item in to_wrap]
    graph.check_rewritable(to_wrap, plan.entry, plan.argument)
    if not graph.is_graph_model(to_wrap):
        plan.check_call("layer")
        _check_single_layer(to_wrap, plan)
        checks.check_finite_weights(to_wrap, plan.entry)
        plan.check_layers(list(graph.iter_named(to_wrap)))
        return _wrap_single(to_wrap, plan, kwargs)
    plan.check_call("model")
    if kwargs:
        raise ValueError(
            f"Unexpected arguments for a model: {sorted(kwargs)}. Wrapper "
            f"arguments such as a name apply when {plan.gerund} a single layer: "
            f"`{plan.entry}(layer, name=...)`."
        )
    allowed = (plan.technique,) if plan.keeps_own_wrappers else ()
    check_model_input(to_wrap, plan.entry, plan.needs_inputs, plan.needs_inputs_why, allowed)
    named = list(graph.iter_layers(to_wrap))
    plan.check_layers(named)
    _check_same_settings(named, plan)
    plan.prepare(to_wrap)
    return plan.finish(graph.rewrite(to_wrap, plan.replace, with_original=True))


def check_model_input(model, fn, needs_inputs=False, why="", allowed=()):
    """What every whole-model entry point checks: a graph model (with
    inputs when `needs_inputs`), finite weights, and no layers of techniques
    other than `allowed` left in it."""
    graph.check_model(model, fn, needs_inputs, why)
    check_not_wrapped(model, fn, allowed)
    checks.check_finite_weights(model, fn)


def check_not_wrapped(model, fn, allowed=()):
    """ValueError if `model` holds layers of a technique not in `allowed`:
    `fn` works on plain layers, so they must be stripped first."""
    by_technique = {}
    for path, technique in techniques.found_in(model):
        if technique not in allowed:
            by_technique.setdefault(technique, []).append(path)
    for technique, paths in by_technique.items():
        listed = ", ".join(f"'{p}'" for p in dict.fromkeys(paths))
        raise ValueError(
            f"Model '{model.name}' holds layers that are {technique.done} "
            f"({listed}): `{fn}` works on plain layers. {_way_out(technique, fn)}"
        )


def _way_out(technique, fn, subject="model"):
    if technique is techniques.QAT_ANNOTATION:
        return (
            f"Apply `{fn}` first and annotate the result, or build the model "
            "without annotations."
        )
    return f"Call `{technique.strip}({subject})` first and pass the result to `{fn}`."


def _check_single_layer(layer, plan):
    """A single layer to wrap (a list holds no models), not already a
    layer of any technique."""
    if isinstance(layer, keras.Model):
        raise ValueError(
            f"`{plan.argument}` must be a Keras layer, a list of layers or a "
            f"Sequential/Functional model; a list holds layers only. Received "
            f"model '{layer.name}' in a list: pass it on its own."
        )
    for inner in techniques.layers_deep(layer):
        technique = techniques.technique_of(inner)
        if technique is None:
            continue
        if technique is plan.technique:
            raise ValueError(
                f"Layer '{layer.name}' is already {technique.done}. To wrap it "
                "with new settings, strip the old wrapper first: "
                f"`{plan.entry}({technique.strip}(layer), ...)`."
            )
        raise ValueError(
            f"Layer '{layer.name}' is {technique.done}: `{plan.entry}` works "
            f"on plain layers. {_way_out(technique, plan.entry, 'layer')}"
        )


def _wrap_single(layer, plan, kwargs):
    if sublayers.is_composite(layer):
        # A subclassed layer: the technique goes to the layers inside it.
        if kwargs:
            raise ValueError(
                f"Layer '{layer.name}' ({type(layer).__name__}) holds other layers, "
                f"which `{plan.entry}` wraps one by one: wrapper arguments "
                f"{sorted(kwargs)} apply to a single stock layer."
            )
        return carry_input_shape(layer, graph.rewrite(layer, plan.replace, with_original=True))
    copy = carry_input_shape(layer, graph.copy_layer(layer))
    return plan.wrap_layer(copy, layer, **kwargs)


def compat_scope(*classes):
    """A custom-object scope naming `classes` (tfmot compatibility).

    tfmot-lite's objects are registered with Keras, so `load_model` needs
    no scope; `prune_scope()` and `cluster_scope()` exist so that tfmot code
    using them keeps working."""
    return keras.saving.custom_object_scope({cls.__name__: cls for cls in classes})


def describe(settings):
    """`key=value, ...` of a settings dict, enum members by their value."""
    return ", ".join(
        f"{key}={getattr(value, 'value', value)!r}" for key, value in settings.items()
    )


def _check_same_settings(named_layers, plan):
    """Layers this technique already wrapped are kept as they are (as in
    tfmot) when they were wrapped with the requested settings; other
    settings would silently not apply, so that is an error naming the
    layers and the fix."""
    differ = [
        f"{path}: {describe(plan.settings(layer))}"
        for path, layer in named_layers
        if techniques.technique_of(layer) is plan.technique
        and plan.settings(layer) != plan.requested(layer)
    ]
    if differ:
        technique = plan.technique
        raise checks.problems_error(
            f"These layers are already {technique.done}, with other settings "
            "than the ones requested, which would not be applied to them",
            differ,
            f"Strip the old wrappers first: `{plan.entry}({technique.strip}(model), ...)`.",
        )


def already_wrapped(layer, plan):
    """Whether `layer` is one of `plan`'s own wrappers (kept by `replace`)."""
    return techniques.technique_of(layer) is plan.technique
