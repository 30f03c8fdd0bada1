"""The tasks a job may run, by name, and what a task receives.

A job names its task by one of the names in :data:`TASKS`; nothing else
can be run, so no user text ever chooses code. Each entry points at a
function ``task(params, context) -> dict`` imported only in the worker
process.
"""

from __future__ import annotations

import importlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from engine.jobs import store

__all__ = [
    "TASKS",
    "JobContext",
    "JobCancelled",
    "CancelFlag",
    "resolve_task",
    "selftest",
]

#: Registered tasks: name -> "module:function".
TASKS: dict[str, str] = {
    "selftest": "engine.jobs.tasks:selftest",
    "bedtopo.experiment": "engine.jobs.bedtopo_task:run_bed_experiment",
    "clustering.run": "engine.jobs.clustering_task:run_clustering_job",
}


class JobCancelled(Exception):
    """Raised inside a task when its cancel flag is seen."""


@dataclass
class JobContext:
    """What a running task can use: its folder, progress and cancellation.

    Attributes
    ----------
    job_id : str
        The job's id.
    run_dir : pathlib.Path
        The job's folder, where the task writes its results.
    root : pathlib.Path
        The runs folder.
    log : logging.Logger
        A logger writing to the job's ``log.txt``.
    """

    job_id: str
    run_dir: Path
    root: Path
    log: logging.Logger

    def progress(self, report: dict[str, Any]) -> None:
        """Record a progress report (kept as the last one and appended)."""
        report = {"time": time.time(), **report}
        store.append_progress(self.job_id, report, self.root)
        state = store.read_state(self.job_id, self.root)
        state.progress = report
        store.write_state(state, self.root)

    def cancelled(self) -> bool:
        """True when a cancel was asked for."""
        return store.cancel_requested(self.job_id, self.root)

    def cancel_event(self) -> "CancelFlag":
        """An ``is_set()`` view of the cancel flag, as the engine's loops take."""
        return CancelFlag(self)

    def check_cancel(self) -> None:
        """Raise :class:`JobCancelled` when a cancel was asked for."""
        if self.cancelled():
            raise JobCancelled


class CancelFlag:
    """``is_set()`` over a job's cancel file (like ``threading.Event``)."""

    def __init__(self, context: JobContext) -> None:
        self._context = context

    def is_set(self) -> bool:
        """True when a cancel was asked for."""
        return self._context.cancelled()


def resolve_task(name: str) -> Callable[[dict[str, Any], JobContext], dict[str, Any]]:
    """The function of a registered task.

    Raises
    ------
    KeyError
        ``name`` is not registered.
    """
    if name not in TASKS:
        raise KeyError(f"unknown task {name!r}; registered: {sorted(TASKS)}")
    module, function = TASKS[name].split(":")
    return getattr(importlib.import_module(module), function)


def selftest(params: dict[str, Any], context: JobContext) -> dict[str, Any]:
    """Check the job machinery: count steps, sleeping between them.

    Parameters
    ----------
    params : dict
        ``steps`` (int, default 5), ``seconds_per_step`` (float, default
        0.2) and ``fail_at`` (a step at which to raise, optional).
    context : JobContext
        The job's context.

    Returns
    -------
    dict
        ``{"steps": n}``; ``result.json`` in the run folder holds the same.
    """
    steps = int(params.get("steps", 5))
    pause = float(params.get("seconds_per_step", 0.2))
    fail_at = params.get("fail_at")
    for step in range(1, steps + 1):
        # Stop between steps when asked, fail where told to.
        context.check_cancel()
        if fail_at is not None and step == int(fail_at):
            raise RuntimeError(f"selftest failed at step {step} as asked")

        time.sleep(pause)
        context.progress({"step": step, "steps": steps, "fraction": step / steps})
    result = {"steps": steps}
    store.write_json_atomic(context.run_dir / "result.json", result)
    return result
