"""Runs the backend scripts named on the command line in this one process
(one interpreter start and one import of the backend for all of them) and
prints one JSON line: {script name: the JSON line it printed}, or
{script name: {"error": its traceback}} for a script that raised, so that
each test reports its own script's failure."""

import contextlib
import io
import json
import pathlib
import runpy
import sys
import traceback

import keras

HERE = pathlib.Path(__file__).parent

results = {}
for name in sys.argv[1:]:
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            runpy.run_path(str(HERE / name), run_name="__main__")
        results[name] = json.loads(printed.getvalue().strip().splitlines()[-1])
    except Exception:  # noqa: BLE001 - reported to the test of this script
        results[name] = {"error": traceback.format_exc()[-3000:]}
    keras.backend.clear_session()
print(json.dumps(results))
