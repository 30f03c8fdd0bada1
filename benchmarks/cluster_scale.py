"""Clustering run time on a CPU: DSC, HEDGTC and the ensemble on Dask.

Run from the repository root (the WFDE5 files found as the app finds them)::

    .venv/bin/python benchmarks/cluster_scale.py            # quick presets
    .venv/bin/python benchmarks/cluster_scale.py --full     # longer training
    .venv/bin/python benchmarks/cluster_scale.py --deep     # + DEC, DSC members

``--full`` uses the longer presets: HEDGTC's ensemble then holds DEC and
DSC members (3 runs each) beside k-means, Gaussian mixture and Ward, on
2 Dask workers in the whole-pipeline row.

On the WFDE5 UK cube, January 2017, hourly (744 steps, 20 x 28 cells, 6
variables, diurnal cycle removed, k = 7), three tables:

1. wall time of one DSC run and one whole HEDGTC run (the runner's
   settings: k-means, Gaussian mixture and Ward members serially, or
   with ``--full`` DEC and DSC members too on 2 workers) through
   :func:`engine.clustering.runner.run_clustering` (preparation,
   training, scores and composites included), against the targets of 3
   and 10 minutes;
2. the ensemble stage alone (:func:`engine.clustering.members.run_members`,
   every base run of HEDGTC's settings) serially in this process and on a
   loopback ``LocalCluster`` of 1 and then 2 one-thread worker processes,
   each timed after a warm-up of its workers, with the ratio of each time
   to the one-worker time measured in the same run;
3. the torch and BLAS thread count each worker reported.

Every process is held to one thread (``OMP_NUM_THREADS=1`` and friends are
set before any worker starts, and ``torch.set_num_threads(1)`` runs in each
worker), so that two workers use two cores and nothing more.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace

# One thread for this process and every worker it starts (inherited).
for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_name] = "1"

import distributed  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from engine.clustering.hedgtc import HEDGTCConfig, member_seeds  # noqa: E402
from engine.clustering.members import (  # noqa: E402
    MEMBERS,
    MemberTask,
    deep_members,
    run_members,
)
from engine.clustering.prepare import PrepareConfig, prepare_samples  # noqa: E402
from engine.clustering.runner import (  # noqa: E402
    ClusteringConfig,
    method_settings,
    run_clustering,
)
from engine.dask_local import local_cluster  # noqa: E402
from engine.data.climate import open_climate_cube  # noqa: E402

#: Targets of wall time on 2 cores, in seconds.
TARGETS = {"dsc": 180.0, "hedgtc": 600.0}


def wfde5_cube():
    """The WFDE5 hourly cube, loaded (the data directory, then the cache)."""
    from engine.data.registry import locate

    folder = locate("wfde5_uk_201701", "air_temperature.nc").parent
    with open_climate_cube(folder) as cube:
        return cube.load()


def one_thread_in_worker() -> dict[str, int | str]:
    """Set torch to one thread in this worker and report the counts."""
    torch.set_num_threads(1)
    return {
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "unset"),
    }


def method_table(cube, prepare: PrepareConfig, *, quick: bool) -> None:
    """Wall time of one DSC and one HEDGTC run against the targets."""
    rows = []
    for method in ("dsc", "hedgtc"):
        config = ClusteringConfig(
            method=method, k=7, prepare=prepare, seeds=1, quick=quick
        )
        start = time.perf_counter()
        result = run_clustering(cube, config)
        seconds = time.perf_counter() - start
        rows.append(
            {
                "method": method,
                "seconds": seconds,
                "target_s": TARGETS[method],
                "met": seconds < TARGETS[method],
                "silhouette_cosine": result.metrics["silhouette_cosine"],
            }
        )
        print(f"{method}: {seconds:.1f} s", flush=True)
    print(f"\nWFDE5 hourly, one run each, quick={quick} (wall time, 1 thread)")
    print(pd.DataFrame(rows).set_index("method").round(3).to_string(), flush=True)


def ensemble_tasks(X, samples, settings: HEDGTCConfig, *, deep: bool):
    """Every base run of HEDGTC's settings as member tasks.

    ``deep`` adds DEC and DSC members where the settings hold none (the
    quick preset), with the settings' ``deep_runs`` (3 when unset).
    """
    members = {**MEMBERS, **deep_members()}
    if deep:
        extra = tuple(n for n in ("dec", "dsc") if n not in settings.algorithms)
        settings = replace(
            settings,
            algorithms=settings.algorithms + extra,
            deep_runs=settings.deep_runs or 3,
        )
    tasks = []
    for name, seeds in member_seeds(settings, members).items():
        needs_samples = getattr(members[name], "needs_samples", False)
        data = samples if needs_samples else X
        tasks += [MemberTask(name, members[name], data, 7, seed) for seed in seeds]
    return tasks


def ensemble_table(samples, *, quick: bool, deep: bool, repeats: int) -> None:
    """The ensemble stage serially, on 1 and on 2 workers, with ratios."""
    # HEDGTC's members and the samples they see (whitened in time).
    from engine.clustering.temporal import whiten_by_differences

    settings = method_settings("hedgtc", quick=quick, seed=0)
    X = whiten_by_differences(samples.X, seed=0)
    tasks = ensemble_tasks(X, samples, settings, deep=deep)
    counts = pd.Series([task.algorithm for task in tasks]).value_counts()
    print(
        f"\nensemble: {len(tasks)} base runs ({counts.to_dict()}), samples {X.shape}",
        flush=True,
    )

    # Serial in this process, after one warm-up run.
    torch.set_num_threads(1)
    rows = []
    run_members(tasks[:1], n_workers=0)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        serial = run_members(tasks, n_workers=0)
        times.append(time.perf_counter() - start)
    rows.append({"workers": "serial", "seconds": min(times)})

    # One and two worker processes, each warmed up before timing.
    threads = {}
    for n_workers in (1, 2):
        with local_cluster(n_workers) as cluster, distributed.Client(
            cluster
        ) as client:
            threads.update(
                {
                    f"{n_workers} workers: {address}": values
                    for address, values in client.run(one_thread_in_worker).items()
                }
            )
            run_members(tasks[: 2 * n_workers], client=client)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                labels = run_members(tasks, client=client)
                times.append(time.perf_counter() - start)
            same = all((a == b).all() for a, b in zip(labels, serial, strict=True))
            rows.append(
                {"workers": str(n_workers), "seconds": min(times), "same": same}
            )

    # Ratios against the one-worker time of this run.
    table = pd.DataFrame(rows).set_index("workers")
    one = table.loc["1", "seconds"]
    table["time / 1 worker"] = table["seconds"] / one
    table["speed-up vs 1 worker"] = one / table["seconds"]
    print(
        f"\nEnsemble stage on a LocalCluster (127.0.0.1), 1 thread per worker, "
        f"best of {repeats}"
    )
    print(table.round(3).to_string())
    print("\nthreads per worker process")
    print(pd.DataFrame(threads).T.to_string(), flush=True)


def main() -> None:
    """Parse the options and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="longer training")
    parser.add_argument(
        "--deep", action="store_true", help="DEC and DSC in the ensemble table too"
    )
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-methods", action="store_true")
    args = parser.parse_args()

    # The hourly cube and its samples, as the page prepares them.
    torch.set_num_threads(1)
    start = time.perf_counter()
    cube = wfde5_cube()
    prepare = PrepareConfig(anomaly="diurnal")
    samples = prepare_samples(cube, prepare, n_clusters=7)
    print(f"WFDE5 hourly: samples {samples.X.shape}", flush=True)

    if not args.skip_methods:
        method_table(cube, prepare, quick=not args.full)
    ensemble_table(
        samples, quick=not args.full, deep=args.deep, repeats=args.repeats
    )
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
