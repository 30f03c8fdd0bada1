"""Atomic writes: a file appears whole under its name, or not at all.

Every result the engine saves (run folders, predictions, caches) goes
through :func:`atomic_write`, so that a crash or a kill never leaves half a
file that a page would show as done.
"""

from __future__ import annotations

import os
import tempfile
from os import PathLike
from pathlib import Path
from typing import Callable

__all__ = ["atomic_write"]


def atomic_write(path: str | PathLike[str], write: Callable[[Path], object]) -> Path:
    """Let ``write`` fill a temporary file beside ``path``, then move it there.

    Parameters
    ----------
    path : path-like
        The final file; its folder is made when missing.
    write : callable
        Called with the temporary file's path; writes the whole content.

    Returns
    -------
    pathlib.Path
        ``path``.

    Notes
    -----
    The temporary file lies in the same folder, so the final
    ``os.replace`` is a rename on one file system: atomic on POSIX. On
    any error the temporary file is removed and the old ``path``, if any,
    is left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)

    # A private temporary name in the target's folder.
    handle, name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".part"
    )
    os.close(handle)
    temporary = Path(name)

    # Write it whole, make it readable like any result file, move it in.
    try:
        write(temporary)
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target
