"""The loopback LocalCluster shared by the scale-out paths."""

from __future__ import annotations

import os

import pytest

distributed = pytest.importorskip("distributed", reason="needs the dask extra")

from engine.dask_local import local_cluster  # noqa: E402


def _environment() -> dict[str, str | None]:
    """The variables a worker process sees."""
    names = ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS")
    return {name: os.environ.get(name) for name in names}


def test_workers_keep_the_heap_trimming_of_this_process() -> None:
    """No 64 KiB trim threshold in the workers; one OpenMP thread each."""
    with local_cluster(2) as cluster, distributed.Client(cluster) as client:
        seen = client.run(_environment)
        assert len(seen) == 2
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
    for environment in seen.values():
        assert environment["MALLOC_TRIM_THRESHOLD_"] == os.environ.get(
            "MALLOC_TRIM_THRESHOLD_"
        )
        assert environment["OMP_NUM_THREADS"] == "1"


def test_bad_sizes_are_named() -> None:
    with pytest.raises(ValueError, match="n_workers >= 1"):
        local_cluster(0)
