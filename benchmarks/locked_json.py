"""A JSON file several benchmark processes update: `update_json`.

The model zoo runs one model per process, two or more at a time, and each
records its results in the same files (`results.json`, `tfmot.json`).
Writing a file whole (`tfmot_lite.atomic_file`) keeps a reader from seeing
half of it, but two processes that each read the file, add their part and
write it back lose the part of whichever wrote first. So the read, the
change and the write happen under one exclusive lock on `<path>.lock`.
"""

import contextlib
import json
import os


def load_json(path, default=None):
    """The JSON value in `path`, or `default` ({}) when there is no file."""
    if path and os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    return {} if default is None else default


def update_json(path, change):
    """Replaces the JSON value in `path` with `change(value)` (`value` {}
    when there is no file yet), no other process reading or writing it
    through `update_json` meanwhile; returns the new value."""
    from tfmot_lite.atomic_file import write_text_atomic

    with _locked(path + ".lock"):
        value = change(load_json(path))
        write_text_atomic(path, json.dumps(value, indent=1, sort_keys=True))
    return value


@contextlib.contextmanager
def _locked(path):
    """An exclusive advisory lock on `path` (POSIX; elsewhere no lock)."""
    try:
        import fcntl
    except ImportError:  # Windows: one run at a time
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
