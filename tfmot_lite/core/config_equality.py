"""`ConfigEquality`: plain (non-Layer) objects described by their `get_config`.

Quantizers, quantize configs, registries, schemes, weight transforms and
pruning schedules are plain Python objects that Keras serializes through
`get_config` / `from_config`. This mixin gives them the rest once:

* `from_config(config)` is `cls(**config)` (override it where nested objects
  must be rebuilt first, the Keras idiom);
* two objects are equal when they are of the same class and their configs
  are equal (`__eq__`, `__ne__`);
* `__hash__` hashes the class name and the config (lists and dicts in it
  hashed as tuples), so equal objects hash alike. A class whose objects are
  mutable sets `__hash__ = None`, as Python does for any class that defines
  `__eq__` alone.
"""


def _frozen(value):
    """`value` with dicts, lists and tuples turned into (nested) tuples."""
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_frozen(v) for v in value)
    return value


class ConfigEquality:
    """Mixin: `from_config`, equality and hashing from `get_config`."""

    def get_config(self):
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __ne__(self, other):
        return not self == other

    def __hash__(self):
        return hash((type(self).__name__, _frozen(self.get_config())))
