"""The core every technique shares (see docs/architecture.md).

* `graph`: walking and rewriting Keras models (nested models, copies);
* `weight_wrapper`: the one wrapper base, a layer run with transformed weights;
* `layer_kinds`: the one table of layer families;
* `techniques`: the one table of techniques (wrapper classes, strip);
* `entry`: the one entry path (layer / list / model dispatch, checks, rewrite);
* `xnnpack_rules`: XNNPACK's sparse-inference rules, for Keras graphs and .tflite files;
* `checks`: argument and weight checks; `config_equality`: config-based equality.
"""
