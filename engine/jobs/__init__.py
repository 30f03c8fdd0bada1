"""Long work run as jobs outside the page, with progress, cancel and a log.

- ``store``: run folders (spec, state, progress, log, results), atomic;
- ``tasks``: the registered tasks a job may run, and their context;
- ``queue``: the queue shared by all sessions: submit, cancel, scheduler;
- ``worker``: the process that runs one job.

From a shell: ``python -m engine jobs submit selftest``, ``... jobs list``.
"""
