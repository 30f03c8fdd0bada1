"""The clustering job: a climate cube, prepared, clustered and scored.

The cube is the WFDE5 demo (from the registry) or a NetCDF file the server
saved from an upload or that names a file on this machine; a job never runs
code or opens files chosen by anything but these parameters.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.jobs import store
from engine.jobs.tasks import JobCancelled, JobContext

__all__ = ["open_source", "run_clustering_job"]


def open_source(
    source: str,
    *,
    path: str | None = None,
    variables: list[str] | None = None,
    bbox: list[float] | None = None,
    period: list[str] | None = None,
    resample: str | None = None,
):
    """The climate cube of a job: ``"wfde5"`` (the demo) or ``"file"``.

    Returns
    -------
    xarray.Dataset
        Dims ``(time, lat, lon)``, one variable per field, loaded.
    """
    from engine.data.climate import open_climate_cube
    from engine.data.registry import locate

    if source == "wfde5":
        paths = [locate("wfde5_uk_201701", "air_temperature.nc").parent]
    elif source == "file" and path:
        paths = [Path(path)]
    else:
        raise ValueError(f"unknown climate source {source!r}")
    with open_climate_cube(
        paths,
        variables=variables or None,
        resample=resample or None,
        bbox=tuple(bbox) if bbox else None,
        period=tuple(period) if period else None,
    ) as cube:
        return cube.load()



def run_clustering_job(params: dict[str, Any], context: JobContext) -> dict[str, Any]:
    """Cluster a climate cube as the page asked.

    Parameters
    ----------
    params : dict
        ``data``: keyword arguments of :func:`open_source`; ``config``: a
        ``ClusteringConfig`` as a dict (``to_dict``).
    context : JobContext
        The job's folder, progress and cancel flag.
    """
    from engine.clustering.runner import ClusteringConfig, run_clustering

    # The cube as the page described it.
    context.progress({"stage": "load", "fraction": 0.0})
    cube = open_source(**params["data"])
    store.write_json_atomic(context.run_dir / "data.json", params["data"])

    # Cluster it; the engine writes its files into the run folder.
    config = ClusteringConfig.from_dict(params["config"])
    result = run_clustering(
        cube,
        config,
        run_dir=context.run_dir,
        progress=context.progress,
        cancel=context.cancel_event(),
    )
    if result.cancelled:
        raise JobCancelled
    return {"metrics": result.metrics}
