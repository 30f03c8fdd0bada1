"""A Dask ``LocalCluster`` on loopback, set up for torch in its workers.

Both scale-out paths (tiled bed prediction and HEDGTC's ensemble members)
start their local cluster here, so that its workers behave as this
process does:

- one numerical thread per worker (``OMP_NUM_THREADS`` and friends, set
  by Dask's nanny before the worker starts);
- glibc's own heap trimming. Dask's nanny sets ``MALLOC_TRIM_THRESHOLD_``
  to 64 KiB in every worker, to hand freed memory back to the system
  sooner. Torch on the CPU allocates and frees many mid-sized tensors a
  step, and with that threshold each free can give pages back only to map
  them again: measured on the WFDE5 hourly cube (2 cores), one DSC member
  took 69-75 s in a default worker, 35 s in a worker without the
  setting and 33-38 s in this process.

Needs the optional ``dask`` extra (``distributed``).
"""

from __future__ import annotations

from typing import Any

__all__ = ["local_cluster"]

#: The nanny's variable that slows torch in workers (see the module notes).
_TRIM_KEY = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


def local_cluster(n_workers: int, threads_per_worker: int = 1) -> Any:
    """Start a ``distributed.LocalCluster`` of worker processes on 127.0.0.1.

    Parameters
    ----------
    n_workers : int
        Worker processes, >= 1.
    threads_per_worker : int
        Threads of each worker; 1 keeps torch and BLAS in one worker from
        competing with the others for the cores.

    Returns
    -------
    distributed.LocalCluster
        Started, dashboard off; the caller closes it (it is a context
        manager).

    Raises
    ------
    ValueError
        If ``n_workers`` or ``threads_per_worker`` is below 1.
    ImportError
        If ``distributed`` is not installed (``pip install -e ".[dask]"``).
    """
    if n_workers < 1 or threads_per_worker < 1:
        raise ValueError(
            f"a local cluster needs n_workers >= 1 and threads_per_worker >= 1, "
            f"got {n_workers} and {threads_per_worker}"
        )
    import dask
    import distributed

    # Workers inherit the nanny's environment as configured at their start.
    with dask.config.set({_TRIM_KEY: None}):
        return distributed.LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        )
