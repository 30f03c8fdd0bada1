"""A job queue shared by every session of the app, on one machine.

Jobs are submitted by writing a run folder (``engine.jobs.store``). One
scheduler process per runs folder (it holds an exclusive lock on
``.scheduler.lock``) starts queued jobs oldest first, each in a worker
process of its own (``python -m engine jobs run <id>``), at most
``max_parallel`` at once: one on a GPU, a configurable number on the CPU
(``GREENBED_CPU_JOBS``, default 1). It watches its workers: a worker that
dies (killed, out of memory) marks its job failed with the reason, and the
queue goes on. The scheduler outlives the page that started it and stops
by itself after a minute with nothing to do; any page or CLI call starts it
again when needed. Jobs found "running" with no live worker after a
restart are marked failed, so nothing looks busy forever.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from engine.jobs import store
from engine.jobs.tasks import TASKS

__all__ = [
    "CPU_JOBS_ENV",
    "default_max_parallel",
    "submit",
    "cancel",
    "ensure_scheduler",
    "run_scheduler",
]

log = logging.getLogger(__name__)

#: Environment variable: how many jobs run at once on a CPU-only machine.
CPU_JOBS_ENV = "GREENBED_CPU_JOBS"

_LOCK_NAME = ".scheduler.lock"

# Schedulers started from this process: kept so that they are not reaped as
# garbage while they run (they outlive the call that started them).
_DETACHED: list[subprocess.Popen] = []
_POLL_S = 0.3


def default_max_parallel() -> int:
    """Jobs at once: 1 with a GPU (they share it), else ``GREENBED_CPU_JOBS``."""
    try:
        import torch

        if torch.cuda.is_available():
            return 1
    except ImportError:
        pass
    return max(1, int(os.environ.get(CPU_JOBS_ENV, "1")))


def submit(
    task: str,
    params: dict[str, Any],
    *,
    label: str = "",
    root: Path | None = None,
    start_scheduler: bool = True,
) -> store.JobState:
    """Queue a job and make sure a scheduler will run it.

    Parameters
    ----------
    task : str
        A name from ``engine.jobs.tasks.TASKS``.
    params : dict
        JSON-able parameters of the task.
    label : str
        A short description for lists.
    root : pathlib.Path, optional
        The runs folder.
    start_scheduler : bool
        Start the scheduler process when none runs (tests may drive it).

    Returns
    -------
    JobState
        The queued job.
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {sorted(TASKS)}")
    state = store.create_job(task, params, label=label, root=root)
    if start_scheduler:
        ensure_scheduler(root)
    return state


def cancel(job_id: str, root: Path | None = None) -> store.JobState:
    """Cancel a job: a queued one at once, a running one at its next step."""
    root = root or store.runs_dir()
    store.request_cancel(job_id, root)
    state = store.read_state(job_id, root)
    if state.state == "queued":
        state.state = "cancelled"
        state.finished = time.time()
        store.write_state(state, root)
    return state


def _scheduler_running(root: Path) -> bool:
    """True when some process holds the scheduler lock of ``root``."""
    with open(root / _LOCK_NAME, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False


def ensure_scheduler(root: Path | None = None) -> bool:
    """Start a scheduler process for ``root`` unless one runs.

    Returns
    -------
    bool
        True when a new scheduler was started.
    """
    root = root or store.runs_dir()
    if _scheduler_running(root):
        return False

    # A detached process, so that it survives the page's script run; a
    # second one started in a race exits at once, finding the lock taken.
    with open(root / "scheduler.log", "a") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "engine", "jobs", "scheduler", "--root", str(root)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    _DETACHED.append(process)
    return True


def _alive(pid: int | None) -> bool:
    """True when a process with this id exists and is not a zombie."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        status = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except (OSError, IndexError):
        return True
    return status != "Z"


def _describe_exit(code: int) -> str:
    """Words for a worker's exit status."""
    if code < 0:
        name = signal.Signals(-code).name
        why = " (out of memory, or killed)" if name == "SIGKILL" else ""
        return f"the job's process was killed by {name}{why}"
    return f"the job's process exited with code {code} without finishing"


def _mark_failed(job_id: str, root: Path, reason: str) -> None:
    """Mark a job failed unless it already reached a final state."""
    state = store.read_state(job_id, root)
    if state.is_final:
        return
    state.state = "failed"
    state.error = reason
    state.finished = time.time()
    store.write_state(state, root)


def _start_worker(job_id: str, root: Path) -> subprocess.Popen:
    """Start the worker process of a job and mark the job running."""
    state = store.read_state(job_id, root)
    with open(store.job_dir(job_id, root) / "worker.err", "a") as err:
        worker = subprocess.Popen(
            [sys.executable, "-m", "engine", "jobs", "run", job_id, "--root", str(root)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    state.state = "running"
    state.pid = worker.pid
    state.started = time.time()
    store.write_state(state, root)
    return worker


def run_scheduler(
    root: Path | None = None,
    *,
    max_parallel: int | None = None,
    idle_exit_s: float = 60.0,
) -> None:
    """Run queued jobs until idle for ``idle_exit_s`` seconds.

    Holds the scheduler lock of ``root`` for its whole life; returns at
    once when another scheduler holds it.
    """
    root = root or store.runs_dir()
    max_parallel = max_parallel or default_max_parallel()
    handle = open(root / _LOCK_NAME, "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return

    (root / "scheduler.pid").write_text(str(os.getpid()))

    # Jobs left "running" by a scheduler that is gone: failed unless alive.
    workers: dict[str, subprocess.Popen] = {}
    orphans: dict[str, int] = {}
    for job in store.list_jobs(root):
        if job.state == "running":
            if _alive(job.pid):
                orphans[job.job_id] = job.pid or 0
            else:
                _mark_failed(
                    job.job_id, root, "the job's process ended while the queue was down"
                )

    idle_since = time.monotonic()
    try:
        while True:
            # Reap finished workers; a death without a final state is a failure.
            for job_id, worker in list(workers.items()):
                code = worker.poll()
                if code is not None:
                    del workers[job_id]
                    if code != 0:
                        _mark_failed(job_id, root, _describe_exit(code))
            for job_id, pid in list(orphans.items()):
                if not _alive(pid):
                    del orphans[job_id]
                    _mark_failed(job_id, root, "the job's process ended unexpectedly")

            # Start queued jobs, oldest first, while there is room.
            queued = [j for j in store.list_jobs(root) if j.state == "queued"]
            for job in sorted(queued, key=lambda j: j.created):
                if len(workers) + len(orphans) >= max_parallel:
                    break
                if store.cancel_requested(job.job_id, root):
                    continue
                workers[job.job_id] = _start_worker(job.job_id, root)

            # Leave when there has been nothing to do for a while.
            if workers or orphans or queued:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > idle_exit_s:
                return
            time.sleep(_POLL_S)
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
