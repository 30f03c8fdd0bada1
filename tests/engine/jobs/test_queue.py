"""The job queue with real processes: a scheduler and one worker per job."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from engine.jobs import queue, store


def wait_for(predicate, *, timeout: float = 60.0, what: str = "condition"):
    """Poll until ``predicate()`` is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def state_of(job_id: str, root: Path) -> str:
    return store.read_state(job_id, root).state


@pytest.fixture
def root(tmp_path: Path):
    """A runs folder whose scheduler is killed at the end of the test."""
    yield tmp_path
    pid_file = tmp_path / "scheduler.pid"
    if pid_file.is_file():
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_job_runs_to_done_with_progress_and_result(root):
    job = queue.submit("selftest", {"steps": 3, "seconds_per_step": 0.05}, root=root)

    # The scheduler picks it up and the worker finishes it.
    wait_for(lambda: state_of(job.job_id, root) == "done", what="job done")
    state = store.read_state(job.job_id, root)
    assert state.error == ""
    assert state.started is not None and state.finished >= state.started

    # Every step was reported, and the result written.
    steps = [r["step"] for r in store.read_progress(job.job_id, root)]
    assert steps == [1, 2, 3]
    assert store.read_json(root / job.job_id / "result.json") == {"steps": 3}
    assert "selftest started" in (root / job.job_id / "log.txt").read_text()


def test_two_jobs_at_once_are_queued_and_run_one_by_one(root):
    params = {"steps": 4, "seconds_per_step": 0.15}
    first = queue.submit("selftest", params, root=root)
    second = queue.submit("selftest", params, root=root)

    # With one slot (the CPU default), never both running at the same time.
    both_running = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = {state_of(first.job_id, root), state_of(second.job_id, root)}
        both_running |= states == {"running"}
        if states == {"done"}:
            break
        time.sleep(0.05)
    assert states == {"done"}
    assert not both_running

    # The older job ran first.
    a = store.read_state(first.job_id, root)
    b = store.read_state(second.job_id, root)
    assert a.finished <= b.started


def test_cancel_a_running_job_and_a_queued_one(root):
    params = {"steps": 200, "seconds_per_step": 0.05}
    running = queue.submit("selftest", params, root=root)
    queued = queue.submit("selftest", params, root=root)
    wait_for(lambda: state_of(running.job_id, root) == "running", what="running")

    # A queued job is cancelled at once, a running one at its next step.
    assert queue.cancel(queued.job_id, root).state == "cancelled"
    queue.cancel(running.job_id, root)
    wait_for(lambda: state_of(running.job_id, root) == "cancelled", what="cancel")
    assert len(store.read_progress(running.job_id, root)) < 200
    time.sleep(1.0)
    assert state_of(queued.job_id, root) == "cancelled"


def test_a_failing_task_is_reported_and_the_queue_goes_on(root):
    bad = queue.submit("selftest", {"steps": 5, "fail_at": 2}, root=root)
    good = queue.submit("selftest", {"steps": 2, "seconds_per_step": 0.05}, root=root)
    wait_for(lambda: state_of(good.job_id, root) == "done", what="second job")
    state = store.read_state(bad.job_id, root)
    assert state.state == "failed"
    assert "failed at step 2" in state.error


def test_a_killed_worker_marks_its_job_failed_and_the_queue_goes_on(root):
    victim = queue.submit("selftest", {"steps": 300, "seconds_per_step": 0.05}, root=root)
    after = queue.submit("selftest", {"steps": 2, "seconds_per_step": 0.05}, root=root)
    wait_for(lambda: store.read_progress(victim.job_id, root), what="first step")

    # Kill the worker as the kernel's out-of-memory killer would.
    os.kill(store.read_state(victim.job_id, root).pid, signal.SIGKILL)
    wait_for(lambda: state_of(victim.job_id, root) == "failed", what="failure")
    assert "SIGKILL" in store.read_state(victim.job_id, root).error
    wait_for(lambda: state_of(after.job_id, root) == "done", what="next job")


def test_results_survive_a_restart_of_the_queue(root):
    done = queue.submit("selftest", {"steps": 2, "seconds_per_step": 0.05}, root=root)
    wait_for(lambda: state_of(done.job_id, root) == "done", what="first job")
    slow = queue.submit("selftest", {"steps": 30, "seconds_per_step": 0.1}, root=root)
    wait_for(lambda: state_of(slow.job_id, root) == "running", what="running")

    # The scheduler dies; its worker goes on alone.
    os.kill(int((root / "scheduler.pid").read_text()), signal.SIGKILL)
    wait_for(lambda: not queue._scheduler_running(root), what="scheduler gone")

    # A new scheduler adopts the running job; both jobs end listed as done.
    assert queue.ensure_scheduler(root)
    wait_for(lambda: state_of(slow.job_id, root) == "done", what="adopted job")
    listed = {job.job_id: job.state for job in store.list_jobs(root)}
    assert listed == {done.job_id: "done", slow.job_id: "done"}


def test_a_job_left_running_by_a_dead_worker_is_failed_on_restart(root):
    # A state file that says "running" for a process that no longer exists.
    job = store.create_job("selftest", {}, root=root)
    state = store.read_state(job.job_id, root)
    state.state, state.pid = "running", 2**22 + 12345
    store.write_state(state, root)

    queue.ensure_scheduler(root)
    wait_for(lambda: state_of(job.job_id, root) == "failed", what="failure")
    assert "queue was down" in store.read_state(job.job_id, root).error


def test_unknown_task_and_bad_job_ids_are_refused(root):
    with pytest.raises(ValueError, match="unknown task"):
        queue.submit("rm -rf /", {}, root=root)
    with pytest.raises(ValueError, match="not a job id"):
        store.job_dir("../etc", root)


def test_state_writes_are_atomic_and_leave_no_temporary_files(root):
    job = store.create_job("selftest", {"steps": 1}, root=root)
    for step in range(20):
        state = store.read_state(job.job_id, root)
        state.progress = {"step": step}
        store.write_state(state, root)
    assert sorted(p.name for p in (root / job.job_id).iterdir()) == [
        "job.json",
        "state.json",
    ]
    assert not [p for p in root.iterdir() if p.name.startswith(".")]
