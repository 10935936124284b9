"""The tutorials (tutorials/*.py) as modules, for the tests that run them."""

import importlib.util
import pathlib

TUTORIALS = pathlib.Path(__file__).resolve().parents[1] / "tutorials"


def load_tutorial(name):
    """`tutorials/<name>.py` imported as a fresh module: the tutorials are
    scripts a reader runs, not a package, so they are loaded by path."""
    spec = importlib.util.spec_from_file_location(f"tutorial_{name}", TUTORIALS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
