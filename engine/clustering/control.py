"""Progress and cancellation hooks shared by the long clustering runs.

Long runs (ensembles, network training, sliding windows) take two
optional callables: ``progress(stage, done, total)``, which a page turns
into a progress bar and the CLI into a line per step, and ``cancel()``,
checked between steps, which stops the run by raising
:class:`ClusteringCancelled` when it returns True. This module imports
nothing heavy, so that Dask workers can load the members without torch.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Cancel", "ClusteringCancelled", "Progress", "check_cancel"]

#: Called as ``progress(stage, done, total)`` during long loops.
Progress = Callable[[str, int, int], None]

#: Called between steps; returning True stops the work.
Cancel = Callable[[], bool]


class ClusteringCancelled(RuntimeError):
    """The caller's ``cancel()`` returned True; the work was stopped."""


def check_cancel(cancel: Cancel | None) -> None:
    """Raise :class:`ClusteringCancelled` when the caller asks to stop.

    Parameters
    ----------
    cancel
        The caller's hook, or ``None`` (never cancelled).
    """
    if cancel is not None and cancel():
        raise ClusteringCancelled("clustering cancelled by the caller")
