"""Files written whole or not at all.

Every file tfmot-lite writes (.tflite models, reports, plots) goes through
`atomic_write`: the content is written to a temporary file in the target's
directory, flushed and fsynced, then moved over the target with
`os.replace`, which is atomic on POSIX and Windows when both are on one file
system (hence the same directory). A crash, a full disk or an exception while
writing leaves the previous target untouched (or no target) and removes the
temporary file; a reader never sees half a model.
"""

import contextlib
import os
import secrets


@contextlib.contextmanager
def atomic_write(path, mode="wb", encoding=None):
    """Opens a temporary file to write `path`'s new content into; on a clean
    exit of the block it replaces `path`, on an exception it is removed.

    Yields the open file object (`mode` 'wb' or 'w').
    """
    if mode not in ("w", "wb"):
        raise ValueError(
            f"atomic_write writes whole files: `mode` must be 'w' or 'wb', got {mode!r}.")
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    temporary = _create_temporary(directory, os.path.basename(path))
    try:
        with open(temporary, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        _keep_permissions(path, temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise
    _fsync_directory(directory)


def write_bytes_atomic(path, data):
    """Writes `data` (bytes) to `path` atomically; returns `path`."""
    with atomic_write(path, "wb") as f:
        f.write(data)
    return path


def write_text_atomic(path, text):
    """Writes `text` (UTF-8) to `path` atomically; returns `path`."""
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def _create_temporary(directory, base):
    """A new empty file beside the target, hidden, with the permissions an
    ordinary `open(path, 'w')` would give (0o666 under the umask). The name
    keeps a short prefix of the target's, to stay within name-length limits."""
    while True:
        name = os.path.join(
            directory, f".{base[:64]}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return name


def _keep_permissions(path, temporary):
    """A replaced file keeps its permissions."""
    try:
        mode = os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        return
    os.chmod(temporary, mode)


def _fsync_directory(directory):
    """Makes the rename itself durable (POSIX); not possible on Windows."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
