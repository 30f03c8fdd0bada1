"""Progress and cancellation hooks shared by the long clustering runs.

Every long run of the package (DSC, DEC, HEDGTC, its members, the GAT
stage, the spatial windows, the runner) takes the same two optional
hooks:

``progress``
    A callable receiving **one dict** per report, with at least
    ``"stage"`` (a short name: ``"pretrain"``, ``"members"``,
    ``"gat"``...) and ``"fraction"`` (share of the whole call done, in
    0..1, never decreasing), plus whatever the stage adds (``epoch``,
    ``losses``, ``done``, ``total``...). A page turns it into a progress
    bar, the CLI into a line per report.
``cancel``
    An object with ``is_set()``, such as :class:`threading.Event`,
    checked between steps. Runs that can hand back a partial result
    (DSC, DEC) stop and mark it ``cancelled``; the others raise
    :class:`ClusteringCancelled`.

This module imports nothing heavy, so that Dask workers can load the
members without torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from engine.clustering.errors import ClusteringCancelled

__all__ = [
    "Cancel",
    "ClusteringCancelled",
    "Progress",
    "check_cancel",
    "is_cancelled",
    "report",
    "scaled_progress",
]

#: Called with one dict per report, holding at least ``stage`` and
#: ``fraction`` (0..1).
Progress = Callable[[dict[str, Any]], Any]


class Cancel(Protocol):
    """Anything with ``is_set()``, such as :class:`threading.Event`."""

    def is_set(self) -> bool:
        """Whether the run should stop."""
        ...


def is_cancelled(cancel: Cancel | None) -> bool:
    """Whether the caller asked to stop (``None`` never does)."""
    return cancel is not None and bool(cancel.is_set())


def check_cancel(cancel: Cancel | None) -> None:
    """Raise :class:`ClusteringCancelled` when the caller asks to stop.

    Parameters
    ----------
    cancel
        The caller's token with ``is_set()``, or ``None`` (never
        cancelled).
    """
    if is_cancelled(cancel):
        raise ClusteringCancelled("clustering cancelled by the caller")


def report(
    progress: Progress | None, stage: str, fraction: float, **extra: Any
) -> None:
    """Send one report, when there is a hook.

    Parameters
    ----------
    progress
        The caller's hook, or ``None``.
    stage
        Name of the stage.
    fraction
        Share of the whole call done; clipped to 0..1.
    **extra
        Further entries of the report.
    """
    if progress is None:
        return
    progress({"stage": stage, "fraction": min(max(float(fraction), 0.0), 1.0), **extra})


def scaled_progress(
    progress: Progress | None, start: float, end: float, **extra: Any
) -> Progress | None:
    """A hook for a sub-call whose fractions fill ``start .. end``.

    Parameters
    ----------
    progress
        The caller's hook, or ``None`` (then ``None`` is returned).
    start, end
        Part of the whole run that the sub-call covers, in 0..1.
    **extra
        Entries added to every report of the sub-call (a ``seed``, say).

    Returns
    -------
    callable or None
        Passes each report on with ``fraction`` mapped to ``start + (end
        - start) * fraction``; the sub-call's own fraction is kept as
        ``stage_fraction``.
    """
    if progress is None:
        return None

    def forward(event: dict[str, Any]) -> None:
        """Map the sub-call's fraction into the caller's range."""
        inner = float(event.get("fraction", 0.0))
        progress(
            {
                **event,
                **extra,
                "stage_fraction": inner,
                "fraction": start + (end - start) * min(max(inner, 0.0), 1.0),
            }
        )

    return forward
