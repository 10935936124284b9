"""`SublayerHost`: a composite layer whose sub-layers a technique replaced.

A subclassed layer serializes as its own hyperparameters
(`TransformerEncoder.get_config()`), so a wrapper put inside it would be
lost by `model.save` and `load_model`. The host stands for the composite in
the model's graph and records what replaced which sub-layer: its config is
the composite's config plus one serialized replacement per path, and
`from_config` rebuilds the composite and puts each replacement back. Saved
weights then load into the same structure, so training resumes exactly.

Stripping the techniques (`core/graph.py`) gives back the composite itself,
of its own class (a KerasHub `TransformerEncoder` stays one).
"""

import keras

from tfmot_lite.core import sublayers
from tfmot_lite.core.weight_wrapper import NO_INPUTS, positional, take_call_signature


def leaf_classes(composite):
    """`{path: class}` of the leaves below `composite`."""
    return {path: type(leaf) for path, _, leaf in sublayers.leaves(composite)}


def replaced_paths(composite, pristine):
    """The paths below `composite` whose layer is not of the class its config
    builds there (`pristine`, from `leaf_classes`): a technique's layer, a
    training stand-in, the Identity a Conv-BatchNorm fold leaves."""
    return [
        path for path, _, leaf in sublayers.leaves(composite)
        if type(leaf) is not pristine.get(path)
    ]


@keras.saving.register_keras_serializable(package="tfmot_lite")
class SublayerHost(keras.layers.Wrapper):
    """Holds `layer`, a composite (a subclassed layer, a KerasHub model)
    some of whose sub-layers were replaced (a pruning wrapper around its
    attention, say), and calls it as it is called.

    Args:
      layer: the composite, its replacements already in place.
      replaced: used by `from_config` only: `[[path, config], ...]`, each
        replacement's serialized layer.
      pristine: `{path: class}` of the leaves `layer`'s config builds
        (`leaf_classes`); by default those `layer` holds now.
    """

    hosts_sublayers = True

    def __init__(self, layer, replaced=None, pristine=None, **kwargs):
        kwargs.setdefault("name", layer.name)
        super().__init__(layer, **kwargs)
        # The leaf classes `layer`'s own config builds (see `replaced_paths`).
        self.pristine = pristine if pristine is not None else leaf_classes(layer)
        for path, config in replaced or ():
            parent, old = sublayers.find(layer, path)
            sublayers.swap(parent, old, keras.saving.deserialize_keras_object(config))
        take_call_signature(self, layer)
        self.supports_masking = getattr(layer, "supports_masking", False)
        if layer.built:
            self.built = True

    def build(self, input_shape=None, *args, **kwargs):
        # Keras passes one `input_shape`; a composite's own `build` may
        # build its attention with `query_shape=..., value_shape=...`.
        if not self.layer.built:
            if input_shape is not None or not (args or kwargs):
                args = (input_shape, *args)
            self.layer.build(*args, **kwargs)
        self.built = True

    def get_build_config(self):
        return self.layer.get_build_config() or super().get_build_config()

    def build_from_config(self, config):
        if not self.layer.built:
            self.layer.build_from_config(config)
        self.built = True

    def call(self, inputs=NO_INPUTS, *args, training=None, **kwargs):
        if self.layer._call_has_training_arg:
            kwargs["training"] = training
        return self.layer(*positional(inputs, args), **kwargs)

    def compute_mask(self, *args, **kwargs):
        return self.layer.compute_mask(*args, **kwargs)

    def get_config(self):
        config = super().get_config()
        config["replaced"] = [
            [path, keras.saving.serialize_keras_object(sublayers.find(self.layer, path)[1])]
            for path in replaced_paths(self.layer, self.pristine)
        ]
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        layer = keras.saving.deserialize_keras_object(
            config.pop("layer"), custom_objects=custom_objects
        )
        return cls(layer, **config)


def host_if_replaced(composite, pristine):
    """`composite` in a `SublayerHost` when any of its sub-layers is not of
    the class its config builds (`pristine`); else `composite` itself, of
    its own class."""
    if replaced_paths(composite, pristine):
        return SublayerHost(composite, pristine=pristine)
    return composite
