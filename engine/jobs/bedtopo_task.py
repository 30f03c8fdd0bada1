"""The bed-topography job: a region of a grid, trained, predicted, scored.

Parameters come from a page or the CLI as plain JSON; the grid and radar
come from the registry (the Helheim demo) by name, never from a path given
by a user, and the region is a GeoJSON polygon in longitude and latitude.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from engine.jobs import store
from engine.jobs.tasks import JobCancelled, JobContext

__all__ = ["DEMO_SOURCES", "load_source", "cut_region", "run_bed_experiment"]

#: Data a bed job can run on: name -> (data set, grid file, radar file).
DEMO_SOURCES: dict[str, tuple[str, str, str]] = {
    "helheim": ("helheim", "subdomain_data.h5", "flightTracks.mat"),
}


def load_source(source: str) -> tuple[Any, Any]:
    """The grid and radar picks of a registered source.

    Returns
    -------
    grid : xarray.Dataset
        Dims ``("y", "x")``, EPSG:3413.
    picks : pandas.DataFrame
        Radar picks with flight-line ids.
    """
    from engine.data.grids import read_topo_hdf5
    from engine.data.radar import read_radar
    from engine.data.registry import locate

    if source not in DEMO_SOURCES:
        raise ValueError(f"unknown source {source!r}; choose {sorted(DEMO_SOURCES)}")
    dataset, grid_file, radar_file = DEMO_SOURCES[source]
    grid = read_topo_hdf5(locate(dataset, grid_file))
    picks = read_radar(locate(dataset, radar_file))
    return grid, picks


def cut_region(grid: Any, picks: Any, region_geojson: dict[str, Any] | None):
    """The window of a grid a drawn region covers, and the picks inside it.

    Parameters
    ----------
    grid : xarray.Dataset
        The whole grid.
    picks : pandas.DataFrame
        Radar picks (EPSG:3413).
    region_geojson : dict or None
        A GeoJSON polygon in longitude and latitude; the whole grid when
        None.

    Returns
    -------
    window : GridWindow or None
        The region laid on the grid (None for the whole grid).
    grid : xarray.Dataset
        The window's grid.
    picks : pandas.DataFrame
        The picks inside the window's cells.
    """
    from engine.data.radar import picks_in_grid
    from engine.data.regions import region_from_geojson, window_on_grid

    window = None
    if region_geojson is not None:
        window = window_on_grid(region_from_geojson(region_geojson), grid)
        grid = window.select(grid)
    inside = picks_in_grid(picks, grid).drop(columns=["row", "col"])
    inside.attrs = dict(picks.attrs)
    return window, grid, inside.reset_index(drop=True)



def run_bed_experiment(params: dict[str, Any], context: JobContext) -> dict[str, Any]:
    """Train DeepTopoNet on a region, predict it, score it against baselines.

    Parameters
    ----------
    params : dict
        ``source`` (a key of :data:`DEMO_SOURCES`), ``region`` (GeoJSON
        polygon, lon/lat, or None for the whole grid), ``preset``
        (``"quick"``, ``"standard"`` or ``"paper"``), ``factor`` (1, 2 or 3:
        150, 75 or 50 m output), ``split`` (``"lines"`` or ``"blocks"``).
    context : JobContext
        The job's folder, progress and cancel flag.

    Returns
    -------
    dict
        ``{"methods": [...], "cancelled": bool}``; the run folder holds the
        experiment's files (see ``engine.bedtopo.experiment``).
    """
    from engine.bedtopo.experiment import ExperimentConfig, run_experiment

    # The data and the region.
    context.progress({"stage": "load", "fraction": 0.0})
    grid, picks = load_source(params.get("source", "helheim"))
    _, grid, picks = cut_region(grid, picks, params.get("region"))
    store.write_json_atomic(
        context.run_dir / "region.json",
        {
            "source": params.get("source", "helheim"),
            "region": params.get("region"),
            "shape": [grid.sizes["y"], grid.sizes["x"]],
            "picks": len(picks),
        },
    )

    # The experiment's settings from the page's plain words.
    preset = params.get("preset", "quick")
    maker = {
        "quick": ExperimentConfig.quick,
        "standard": ExperimentConfig.standard,
        "paper": ExperimentConfig.paper,
    }[preset]
    config = maker()
    factor = params.get("factor")
    if factor and config.train.model != "paper":
        config = replace(config, train=replace(config.train, factor=int(factor)))
    split = params.get("split")
    if split:
        config = replace(config, split=replace(config.split, kind=split))

    # Run it; the engine writes its files into the run folder.
    result = run_experiment(
        grid,
        picks,
        config,
        run_dir=context.run_dir,
        progress=context.progress,
        cancel=context.cancel_event(),
    )
    if result.cancelled:
        raise JobCancelled
    return {"methods": list(result.table.index.astype(str)), "cancelled": False}
