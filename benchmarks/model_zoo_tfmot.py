"""tensorflow-model-optimization beside the model zoo: tfmot's
`quantize_model` and int8 conversion of the same `keras.applications`
architectures, untrained, in a subprocess on `tf_keras` (where the `bench`
extra is installed), so the page can say which of them tfmot wraps."""

import json
import os
import subprocess
import sys
import textwrap

from locked_json import load_json, update_json

TFMOT_SCRIPT = textwrap.dedent("""
    import json, os, sys
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import tensorflow as tf
    import tf_keras as keras
    import tensorflow_model_optimization as tfmot
    size = int(sys.argv[1])
    out = {}
    for name in sys.argv[2].split(","):
        try:
            model = getattr(keras.applications, name)(
                input_shape=(size, size, 3), weights=None, classes=10,
                classifier_activation=None)
            qat = tfmot.quantization.keras.quantize_model(model)
            converter = tf.lite.TFLiteConverter.from_keras_model(qat)
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            out[name] = {"status": "ok", "bytes": len(converter.convert())}
        except Exception as error:
            line = (f"{type(error).__name__}: {error}".splitlines() or ["?"])[0][:200]
            out[name] = {"status": "fails: " + line}
    print(json.dumps(out))
""")


def run_tfmot(models, size, cache_path=None):
    """`(note for the page, {model: {"status", "bytes"}})`: tfmot's
    `quantize_model` and int8 conversion of the same architectures
    (untrained), or why it was not run (and an empty dict). With
    `cache_path`, architectures already tried at this size by this tfmot
    version are read from that file and only the others run (a run of one
    model does not try every cached model again)."""
    import importlib.util

    missing = [m for m in ("tf_keras", "tensorflow_model_optimization")
               if importlib.util.find_spec(m) is None]
    if missing:
        return ("Skipped: " + ", ".join(missing) + " not importable on the machine "
                "this page was generated on."), {}
    version = tfmot_version()
    cached = _results(load_json(cache_path), version)
    todo = [m for m in models if f"{m}@{size}" not in cached]
    if todo:
        env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
        done = subprocess.run([sys.executable, "-c", TFMOT_SCRIPT, str(size), ",".join(todo)],
                              capture_output=True, text=True, env=env, timeout=3600)
        if done.returncode:
            return "Skipped: " + (done.stderr.strip().splitlines() or ["tfmot run failed"])[-1], {}
        ran = {f"{m}@{size}": v
               for m, v in json.loads(done.stdout.strip().splitlines()[-1]).items()}
        cached.update(ran)
        if cache_path:  # with what other runs stored meanwhile
            update_json(cache_path, lambda stored: {
                "tfmot": version, "results": {**_results(stored, version), **ran}})
    found = {m: cached[f"{m}@{size}"] for m in models}
    wraps = sum(v["status"] == "ok" for v in found.values())
    note = (f"tfmot {version} (`tf_keras`): `quantize_model` and an int8 "
            f"conversion of each architecture, untrained, in a subprocess: {wraps} of "
            f"{len(found)} wrap and convert. Its column in the table (on the `qat` rows) "
            "gives the size of its .tflite or its first error line.")
    return note, found


def _results(stored, version):
    """The `{"Model@size": result}` of `stored` (a tfmot.json's content)
    if this tfmot version wrote it, else {}."""
    return stored.get("results", {}) if stored.get("tfmot") == version else {}


def tfmot_version():
    try:
        from importlib.metadata import version

        return version("tensorflow-model-optimization")
    except Exception:  # noqa: BLE001 - a version string only
        return "?"
