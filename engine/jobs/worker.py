"""The worker process of one job: ``python -m engine jobs run <id>``."""

from __future__ import annotations

import logging
import os
import time
import traceback
from pathlib import Path

from engine.jobs import store
from engine.jobs.tasks import JobCancelled, JobContext, resolve_task

__all__ = ["run_job"]


def _job_logger(job_id: str, run_dir: Path) -> logging.Logger:
    """A logger that writes to the job's ``log.txt`` (engine logs included)."""
    handler = logging.FileHandler(run_dir / "log.txt")
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    engine_log = logging.getLogger("engine")
    engine_log.setLevel(logging.INFO)
    engine_log.addHandler(handler)
    return logging.getLogger(f"engine.jobs.{job_id}")


def run_job(job_id: str, root: Path | None = None) -> str:
    """Run a queued job to its end and record how it ended.

    Parameters
    ----------
    job_id : str
        The job's id.
    root : pathlib.Path, optional
        The runs folder.

    Returns
    -------
    str
        The final state: ``"done"``, ``"failed"`` or ``"cancelled"``.
    """
    root = root or store.runs_dir()
    run_dir = store.job_dir(job_id, root)
    spec = store.read_json(run_dir / "job.json")
    log = _job_logger(job_id, run_dir)

    # Mark the job running in this process.
    state = store.read_state(job_id, root)
    if state.is_final:
        return state.state
    state.state = "running"
    state.pid = os.getpid()
    state.started = state.started or time.time()
    store.write_state(state, root)
    log.info("job %s: task %s started", job_id, spec["task"])

    # Run the task; every way out ends in a final state.
    context = JobContext(job_id=job_id, run_dir=run_dir, root=root, log=log)
    try:
        task = resolve_task(spec["task"])
        task(spec.get("params", {}), context)
        final, error = "done", ""
    except JobCancelled:
        final, error = "cancelled", ""
    except Exception as exc:  # noqa: BLE001 - any failure of a task is reported
        log.error("job %s failed:\n%s", job_id, traceback.format_exc())
        final, error = "failed", f"{type(exc).__name__}: {exc}"

    # Record how it ended.
    state = store.read_state(job_id, root)
    state.state = final
    state.error = error
    state.finished = time.time()
    store.write_state(state, root)
    log.info("job %s: %s", job_id, final)
    return final
