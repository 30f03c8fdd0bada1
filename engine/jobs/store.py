"""Run folders: where a job's spec, state, progress, log and results live.

Every job has a folder ``<runs dir>/<job id>/`` named by the server (a time
stamp and random hex digits, never user text) holding:

- ``job.json``: what to run (the task's name and its parameters);
- ``state.json``: queued, running, done, failed or cancelled, the process
  id, times, the last progress report and the error message;
- ``progress.jsonl``: every progress report, one JSON object a line;
- ``log.txt``: the worker's log;
- ``cancel``: present when a cancel was asked for;
- whatever the task writes (results, model, figures).

Every JSON file is written atomically (a temporary file in the same folder,
then ``os.replace``), so a crash never leaves a half-written state that a
page would read as done.
"""

from __future__ import annotations

import json
import os
import secrets
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.atomic import atomic_write

__all__ = [
    "RUNS_DIR_ENV",
    "STATES",
    "FINAL_STATES",
    "JobState",
    "runs_dir",
    "new_job_id",
    "write_json_atomic",
    "read_json",
    "job_dir",
    "create_job",
    "read_state",
    "write_state",
    "append_progress",
    "read_progress",
    "list_jobs",
    "request_cancel",
    "cancel_requested",
]

#: Environment variable naming the folder of run folders.
RUNS_DIR_ENV = "GREENBED_RUNS_DIR"

#: Every state a job can be in, in order of its life.
STATES = ("queued", "running", "done", "failed", "cancelled")

#: States a job never leaves.
FINAL_STATES = frozenset({"done", "failed", "cancelled"})

_REPO_ROOT = Path(__file__).resolve().parents[2]


def runs_dir() -> Path:
    """The folder of run folders: ``$GREENBED_RUNS_DIR`` or ``<repo>/runs``."""
    path = Path(os.environ.get(RUNS_DIR_ENV) or _REPO_ROOT / "runs")
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_job_id() -> str:
    """A fresh job id: UTC time stamp and 6 random hex digits."""
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(3)


def write_json_atomic(path: Path, content: Any) -> None:
    """Write JSON to a temporary file beside ``path``, then move it in place."""

    def fill(temporary: Path) -> None:
        with open(temporary, "w") as out:
            json.dump(content, out, indent=2, default=str)
            out.flush()
            os.fsync(out.fileno())

    atomic_write(path, fill)


def read_json(path: Path, default: Any = None) -> Any:
    """Read a JSON file, or return ``default`` when it is absent."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default


def job_dir(job_id: str, root: Path | None = None) -> Path:
    """The folder of a job, checked to be a plain name under the runs folder."""
    root = root or runs_dir()
    if (
        not job_id
        or not job_id.isprintable()
        or any(c in job_id for c in "/\\")
        or job_id.startswith(".")
    ):
        raise ValueError(f"{job_id!r} is not a job id")
    return root / job_id


@dataclass
class JobState:
    """The state of one job, as kept in ``state.json``.

    Attributes
    ----------
    job_id : str
        The job's id (its folder's name).
    task : str
        The task's registered name.
    state : str
        One of :data:`STATES`.
    created, started, finished : float or None
        Unix times in seconds.
    pid : int or None
        Process id of the worker while it runs.
    progress : dict
        The last progress report.
    error : str
        Why the job failed, in words; empty otherwise.
    label : str
        A short description for lists.
    """

    job_id: str
    task: str
    state: str = "queued"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    pid: int | None = None
    progress: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    label: str = ""

    @property
    def is_final(self) -> bool:
        """True when the job will not change any more."""
        return self.state in FINAL_STATES


def create_job(
    task: str, params: dict[str, Any], *, label: str = "", root: Path | None = None
) -> JobState:
    """Make a run folder for a new, queued job.

    Parameters
    ----------
    task : str
        A registered task name (see ``engine.jobs.tasks``).
    params : dict
        JSON-able parameters of the task.
    label : str
        A short description for lists.
    root : pathlib.Path, optional
        The runs folder; :func:`runs_dir` by default.

    Returns
    -------
    JobState
        The new job, queued.
    """
    root = root or runs_dir()

    # The folder is made under a temporary name and renamed when complete,
    # so a queue never sees a job without its spec.
    job_id = new_job_id()
    staging = Path(tempfile.mkdtemp(prefix=f".{job_id}.", dir=root))
    state = JobState(job_id=job_id, task=task, label=label)
    write_json_atomic(staging / "job.json", {"task": task, "params": params})
    write_json_atomic(staging / "state.json", asdict(state))
    os.replace(staging, root / job_id)
    return state


def read_state(job_id: str, root: Path | None = None) -> JobState:
    """The state of a job."""
    content = read_json(job_dir(job_id, root) / "state.json")
    if content is None:
        raise FileNotFoundError(f"no job {job_id!r} in {root or runs_dir()}")
    return JobState(**content)


def write_state(state: JobState, root: Path | None = None) -> None:
    """Save a job's state atomically."""
    write_json_atomic(job_dir(state.job_id, root) / "state.json", asdict(state))


def append_progress(job_id: str, report: dict[str, Any], root: Path | None = None) -> None:
    """Append one progress report to ``progress.jsonl``."""
    with open(job_dir(job_id, root) / "progress.jsonl", "a") as out:
        out.write(json.dumps(report, default=str) + "\n")


def read_progress(job_id: str, root: Path | None = None) -> list[dict[str, Any]]:
    """Every progress report of a job, oldest first (a torn last line is skipped)."""
    path = job_dir(job_id, root) / "progress.jsonl"
    if not path.is_file():
        return []
    reports = []
    for line in path.read_text().splitlines():
        try:
            reports.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return reports


def list_jobs(root: Path | None = None) -> list[JobState]:
    """Every job in the runs folder, newest first."""
    root = root or runs_dir()
    jobs = []
    for path in root.iterdir():
        if path.name.startswith(".") or not (path / "state.json").is_file():
            continue
        try:
            jobs.append(read_state(path.name, root))
        except (OSError, json.JSONDecodeError, TypeError):
            continue
    return sorted(jobs, key=lambda job: job.created, reverse=True)


def request_cancel(job_id: str, root: Path | None = None) -> None:
    """Ask a job to stop: the worker sees the flag between steps."""
    (job_dir(job_id, root) / "cancel").touch()


def cancel_requested(job_id: str, root: Path | None = None) -> bool:
    """True when a cancel was asked for."""
    return (job_dir(job_id, root) / "cancel").exists()
