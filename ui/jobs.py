"""Job widgets shared by the pages: the active job, its progress, the runs.

A page submits a job through ``engine.jobs.queue`` and keeps its id in the
URL (``?job=<id>``), so that a reload, or the same URL in a second tab,
shows the same job instead of starting a new one. The progress panel is a
fragment that reruns itself every second while the job runs, leaving the
rest of the page alone.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import streamlit as st

from engine.jobs import queue, store

__all__ = [
    "JOB_PARAM",
    "active_job_id",
    "set_active_job",
    "submit",
    "progress_panel",
    "runs_table",
]

#: Query parameter holding the page's active job.
JOB_PARAM = "job"


def active_job_id(task: str | None = None) -> str | None:
    """The page's job: the one named in the URL, else the newest unfinished one.

    A reload keeps the URL, so it shows the same job; a second tab opened on
    the page without one shows the job that is queued or running for the
    task, from whichever session started it (the queue is shared).
    """
    job_id = st.query_params.get(JOB_PARAM)
    if job_id:
        try:
            store.read_state(job_id)
            return job_id
        except (FileNotFoundError, ValueError):
            pass
    if task is not None:
        for job in store.list_jobs():
            if job.task == task and not job.is_final:
                set_active_job(job.job_id)
                return job.job_id
    return None


def set_active_job(job_id: str | None) -> None:
    """Name the page's active job in the URL (or forget it)."""
    if job_id:
        st.query_params[JOB_PARAM] = job_id
    else:
        st.query_params.pop(JOB_PARAM, None)


def submit(task: str, params: dict[str, Any], *, label: str) -> str:
    """Queue a job, make it the page's active one, return its id."""
    state = queue.submit(task, params, label=label)
    set_active_job(state.job_id)
    return state.job_id


def _elapsed(state: store.JobState) -> str:
    """Seconds since the job started (or ran), in words."""
    if state.started is None:
        return "waiting in the queue"
    end = state.finished or time.time()
    return f"{end - state.started:,.0f} s"


@st.fragment(run_every=1.0)
def _live_panel(job_id: str, draw_progress: Callable[[list[dict]], None]) -> None:
    """Progress of a running job, redrawn every second until it ends."""
    state = store.read_state(job_id)
    reports = store.read_progress(job_id)
    fraction = float(state.progress.get("fraction", 0.0) or 0.0)
    left = state.progress.get("seconds_left")
    words = f"{state.state}, {_elapsed(state)}"
    if isinstance(left, (int, float)) and state.state == "running":
        words += f", about {left:,.0f} s left"
    st.progress(min(max(fraction, 0.0), 1.0), text=words)
    if reports:
        draw_progress(reports)
    if state.is_final:
        # One full rerun draws the results in place of the live panel.
        st.rerun()


def progress_panel(
    job_id: str, draw_progress: Callable[[list[dict]], None]
) -> store.JobState:
    """Show a job's state; live progress and a cancel button while it runs.

    Parameters
    ----------
    job_id : str
        The job.
    draw_progress : callable
        Draws the progress reports (a list of dicts, oldest first), for
        example loss curves.

    Returns
    -------
    JobState
        The job's state as read for this run of the page.
    """
    state = store.read_state(job_id)
    st.caption(f"Job {job_id}: {state.label}")

    # Running or queued: live panel and cancel.
    if not state.is_final:
        if st.button("Cancel", key=f"cancel.{job_id}"):
            queue.cancel(job_id)
            st.toast("Cancel asked: the job stops at its next step.")
        _live_panel(job_id, draw_progress)
        return state

    # Ended: say how; the page draws the results.
    reports = store.read_progress(job_id)
    if state.state == "failed":
        st.error(f"The job failed: {state.error}")
    elif state.state == "cancelled":
        st.warning("The job was cancelled; what it finished is kept below.")
    else:
        st.success(f"Done in {_elapsed(state)}.")
    if reports:
        with st.expander("Progress of the run", expanded=False):
            draw_progress(reports)
    return state


def runs_table(task: str) -> list[store.JobState]:
    """Earlier jobs of one task, newest first, as a table; returns them."""
    jobs = [job for job in store.list_jobs() if job.task == task]
    if not jobs:
        st.caption("No runs yet.")
        return []
    st.dataframe(
        [
            {
                "job": job.job_id,
                "what": job.label,
                "state": job.state,
                "started": (
                    time.strftime("%Y-%m-%d %H:%M", time.localtime(job.started))
                    if job.started
                    else ""
                ),
                "error": job.error,
            }
            for job in jobs
        ],
        hide_index=True,
        width="stretch",
    )
    return jobs
