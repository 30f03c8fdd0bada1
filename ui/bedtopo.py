"""Streamlit helpers of the bed-topography page: state, caches, maps, figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import folium
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import xarray as xr
from plotly.subplots import make_subplots

from engine.data.overview import flight_line_geometries
from engine.data.regions import GridWindow, grid_region
from engine.jobs import store
from engine.jobs.bedtopo_task import cut_region, load_source
from ui import maps

# Session-state keys of the page.
REGION = "bed.region"
PRESET = "bed.preset"
RESOLUTION = "bed.resolution"
SPLIT = "bed.split"
RUN = "bed.run"
OPEN_RUN = "bed.open_run"
COMPARE = "bed.compare"
PROFILE_LINE = "bed.profile_line"
MAP_KEY = "bed.map"

#: Run settings in plain words -> engine preset names.
PRESETS = {
    "Quick (a few minutes on a laptop)": "quick",
    "Standard (full width; GPU advised)": "standard",
    "Paper (the released network, 150 m)": "paper",
}

#: Output resolutions -> subgrid factor.
RESOLUTIONS = {"150 m": 1, "75 m": 2, "50 m": 3}

#: Hold-outs used for the scores.
SPLITS = {
    "Whole flight lines held out": "lines",
    "10 x 10 km blocks held out": "blocks",
}

#: Colour maps of the result layers: (matplotlib, plotly, symmetric).
BED_CMAP = ("terrain", "Earth")
DIFF_CMAP = ("RdBu_r", "RdBu")
STD_CMAP = ("viridis", "Viridis")


# ---------------------------------------------------------------------------
# Data and regions
# ---------------------------------------------------------------------------


@st.cache_resource(show_spinner="Reading the Helheim demo data...")
def demo_data() -> tuple[xr.Dataset, pd.DataFrame]:
    """The Helheim grid and its radar picks (read once per server)."""
    return load_source("helheim")


def region_summary(region: dict[str, Any] | None) -> dict[str, Any]:
    """What a drawn region holds: area, cells at 150 m, radar picks and lines.

    Raises the engine's ``RegionError`` when the data cannot serve it.
    """
    grid, picks = demo_data()
    window, sub, inside = cut_region(grid, picks, region)
    spacing = float(sub.attrs.get("grid_spacing", 150.0))

    # Inside the polygon as drawn; the run uses its bounding window.
    if isinstance(window, GridWindow):
        cells = window.n_cells
        n_picks, n_lines = window.count_picks(picks)
    else:
        cells = sub.sizes["y"] * sub.sizes["x"]
        n_picks, n_lines = len(inside), int(inside["line_id"].nunique())
    return {
        "area_km2": cells * spacing**2 / 1e6,
        "cells": cells,
        "shape": (sub.sizes["y"], sub.sizes["x"]),
        "picks": n_picks,
        "lines": n_lines,
        "window_picks": len(inside),
    }


def region_map(region: dict[str, Any] | None, *, height: int = 520) -> folium.Map:
    """The Helheim demo grid, its radar lines, the drawn region and a draw tool."""
    grid, picks = demo_data()
    m = maps.greenland_map(draw=True, center=(66.5, -38.65), zoom=10, height=height)
    folium.GeoJson(
        grid_region(grid).to_geojson(),
        name="Helheim demo grid (data coverage)",
        style_function=lambda _: maps.KIND_STYLE["grid"],
    ).add_to(m)
    folium.GeoJson(
        flight_line_geometries(picks).__geo_interface__,
        name="Radar flight lines",
        style_function=lambda _: maps.KIND_STYLE["radar"],
    ).add_to(m)
    if region is not None:
        folium.GeoJson(
            region,
            name="Selected region",
            style_function=lambda _: {"color": "#2ca02c", "weight": 3, "fillOpacity": 0},
        ).add_to(m)
    return maps.finish_map(m)


def drawn_region(output: dict[str, Any] | None) -> dict[str, Any] | None:
    """The polygon just drawn on the map (a GeoJSON geometry), if any."""
    if not output:
        return None
    drawing = output.get("last_active_drawing")
    if drawing and drawing.get("geometry", {}).get("type") == "Polygon":
        return drawing["geometry"]
    return None


def drawn_line(output: dict[str, Any] | None) -> list[list[float]] | None:
    """The line just drawn on the map (longitude, latitude pairs), if any."""
    if not output:
        return None
    drawing = output.get("last_active_drawing")
    if drawing and drawing.get("geometry", {}).get("type") == "LineString":
        return drawing["geometry"]["coordinates"]
    return None


# ---------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------


def run_params(region: dict[str, Any] | None, preset: str, resolution: str,
               split: str) -> dict[str, Any]:
    """The job's parameters from the page's plain words."""
    return {
        "source": "helheim",
        "region": region,
        "preset": PRESETS[preset],
        "factor": RESOLUTIONS[resolution],
        "split": SPLITS[split],
    }  # fmt: skip


def run_label(params: dict[str, Any], summary: dict[str, Any]) -> str:
    """A short description of a run for lists."""
    factor = params["factor"] if params["preset"] != "paper" else 1
    return (
        f"{params['preset']}, {150 // factor} m, {params['split']} hold-out, "
        f"{summary['area_km2']:,.0f} km2, {summary['picks']} picks"
    )


@st.cache_resource(max_entries=6, show_spinner="Reading the run's results...")
def load_run(job_id: str, finished: float | None) -> Any:
    """The experiment of a finished job (cached per job and finish time)."""
    from engine.bedtopo.experiment import load_experiment

    return load_experiment(store.job_dir(job_id))


def region_of_run(job_id: str) -> dict[str, Any] | None:
    """The region a run was made on (GeoJSON, lon/lat), None for the whole grid."""
    content = store.read_json(store.job_dir(job_id) / "region.json", {}) or {}
    return content.get("region")


def run_files(job_id: str) -> dict[str, Path]:
    """Downloadable files of a run that exist."""
    folder = store.job_dir(job_id)
    names = {
        "prediction (NetCDF)": "prediction.nc",
        "scores (CSV)": "scores.csv",
        "configuration (JSON)": "config.json",
    }
    return {label: folder / name for label, name in names.items()
            if (folder / name).is_file()}  # fmt: skip


def geotiff_bytes(job_id: str, prediction: xr.Dataset) -> bytes:
    """The predicted bed as a GeoTIFF, written into the run folder once."""
    from engine.bedtopo.predict import write_geotiff

    path = store.job_dir(job_id) / "prediction_bed.tif"
    if not path.is_file():
        write_geotiff(prediction, path, variable="bed")
    return path.read_bytes()


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------


def progress_figure(reports: list[dict[str, Any]]) -> go.Figure:
    """Both losses, the two gammas and the validation RMSE per epoch."""
    epochs = [r for r in reports if r.get("stage", "train") == "train" and "epoch" in r]
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("Losses (m^2)", "Balance and validation")
    )
    if not epochs:
        return fig

    # Ensemble members train one after another: their epochs follow on.
    x, base, member, top = [], 0, 0, 0
    for record in epochs:
        if record.get("member", 0) != member:
            base, member, top = base + top, record.get("member", 0), 0
        top = max(top, record["epoch"])
        x.append(base + record["epoch"])
    for key, name in (("radar_loss", "radar loss L_r"),
                      ("bedmachine_loss", "BedMachine loss L_b"),
                      ("loss", "total")):  # fmt: skip
        fig.add_trace(go.Scatter(x=x, y=[r.get(key) for r in epochs], name=name),
                      row=1, col=1)  # fmt: skip
    for key, name in (("gamma_radar", "gamma_r"), ("gamma_bedmachine", "gamma_b")):
        fig.add_trace(go.Scatter(x=x, y=[r.get(key) for r in epochs], name=name),
                      row=1, col=2)  # fmt: skip
    fig.update_yaxes(type="log", row=1, col=1)
    title = "epoch (ensemble members one after another)" if member else "epoch"
    fig.update_xaxes(title_text=title)
    fig.update_layout(height=320, margin=dict(l=10, r=10, t=40, b=10))
    return fig


def heatmap(
    da: xr.DataArray, *, title: str, colorscale: str, symmetric: bool = False
) -> go.Figure:
    """A grid as a heatmap in EPSG:3413 kilometres, equal scale on both axes."""
    values = da.to_numpy()
    fig = go.Figure(
        go.Heatmap(
            x=da["x"].to_numpy() / 1000,
            y=da["y"].to_numpy() / 1000,
            z=values,
            colorscale=colorscale,
            zmid=0 if symmetric else None,
            colorbar=dict(title=da.attrs.get("units", "m")),
        )
    )
    fig.update_layout(
        title=title,
        height=420,
        margin=dict(l=10, r=10, t=40, b=10),
        xaxis_title="easting (km, EPSG:3413)",
        yaxis_title="northing (km)",
    )
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig


def fine_bedmachine(grid: xr.Dataset, prediction: xr.Dataset) -> xr.DataArray:
    """BedMachine's bed on the prediction's (finer) grid, nearest cell."""
    return grid["bed_bedmachine"].sel(
        x=prediction["x"], y=prediction["y"], method="nearest"
    ).assign_coords(x=prediction["x"], y=prediction["y"])


def result_layers(result: Any, grid: xr.Dataset) -> dict[str, tuple]:
    """Named result grids with their colour maps: (DataArray, mpl, plotly, sym)."""
    pred = result.prediction
    bedmachine = fine_bedmachine(grid, pred)
    difference = (pred["bed"] - bedmachine).rio.write_crs(pred.rio.crs)
    difference.attrs["units"] = "m"
    layers = {
        "DeepTopoNet bed": (pred["bed"], *BED_CMAP, False),
        "BedMachine bed": (bedmachine, *BED_CMAP, False),
        "Difference (DeepTopoNet - BedMachine)": (difference, *DIFF_CMAP, True),
    }
    if np.isfinite(pred["bed_std"]).any():
        layers["Uncertainty (std)"] = (pred["bed_std"], *STD_CMAP, False)
    return layers


def _range(da: xr.DataArray, symmetric: bool) -> tuple[float, float]:
    """Colour range: 2-98 % of the values (symmetric about 0 when asked)."""
    lo, hi = np.nanpercentile(da.to_numpy(), [2, 98])
    if symmetric:
        edge = max(abs(lo), abs(hi), 1.0)
        return -edge, edge
    return float(lo), float(hi)


def result_map(result: Any, grid: xr.Dataset, *, height: int = 560) -> folium.Map:
    """Result layers and held-out radar misfits on a map with a layer switcher."""
    layers = result_layers(result, grid)
    centre = grid_region(grid).to_lonlat().centroid
    m = maps.greenland_map(draw=True, draw_lines=True, center=(centre.y, centre.x),
                           zoom=10, height=height)  # fmt: skip
    for index, (name, (da, cmap, _, symmetric)) in enumerate(layers.items()):
        lo, hi = _range(da, symmetric)
        maps.raster_overlay(da, name=f"{name} ({lo:,.0f} to {hi:,.0f} m)", cmap=cmap,
                            vmin=lo, vmax=hi, show=index == 0).add_to(m)  # fmt: skip

    # Held-out radar picks coloured by their misfit to each bed.
    held = result.heldout
    to_lonlat = _lonlat(held["x"].to_numpy(), held["y"].to_numpy())
    for column, label in (("model_bed", "DeepTopoNet"), ("bedmachine_bed", "BedMachine")):
        if column not in held:
            continue
        misfit = held[column].to_numpy() - held["radar_bed"].to_numpy()
        group = folium.FeatureGroup(name=f"Held-out radar: misfit to {label}",
                                    show=label == "DeepTopoNet")  # fmt: skip
        for (lon, lat), value in zip(to_lonlat, misfit, strict=True):
            folium.CircleMarker(
                location=(lat, lon), radius=4, weight=0, fill=True,
                fill_color=_misfit_colour(value), fill_opacity=0.9,
                tooltip=f"{label} - radar: {value:+.0f} m",
            ).add_to(group)  # fmt: skip
        group.add_to(m)
    return maps.finish_map(m)


def _lonlat(x: np.ndarray, y: np.ndarray) -> list[tuple[float, float]]:
    """EPSG:3413 metres to (longitude, latitude) pairs."""
    from pyproj import Transformer

    lon, lat = Transformer.from_crs("EPSG:3413", "EPSG:4326", always_xy=True).transform(
        x, y
    )
    return list(zip(np.asarray(lon), np.asarray(lat), strict=True))


def _misfit_colour(value: float, limit: float = 200.0) -> str:
    """Blue for a bed too deep, red for too high, white near zero."""
    import matplotlib

    rgba = matplotlib.colormaps["RdBu_r"]((np.clip(value / limit, -1, 1) + 1) / 2)
    return matplotlib.colors.to_hex(rgba)


def legend_figure(layers: dict[str, tuple]) -> go.Figure:
    """Colour bars of the map's layers, side by side."""
    fig = go.Figure()
    for index, (name, (da, _, colorscale, symmetric)) in enumerate(layers.items()):
        lo, hi = _range(da, symmetric)
        fig.add_trace(go.Scatter(
            x=[None], y=[None], mode="markers", showlegend=False,
            marker=dict(colorscale=colorscale, cmin=lo, cmax=hi, color=[lo],
                        showscale=True, colorbar=dict(
                            title=name.split(" (")[0], orientation="h",
                            x=(index + 0.5) / len(layers), xanchor="center",
                            len=0.9 / len(layers), y=0.5, thickness=12)),
        ))  # fmt: skip
    fig.update_layout(height=110, margin=dict(l=5, r=5, t=5, b=5),
                      xaxis_visible=False, yaxis_visible=False)  # fmt: skip
    return fig


def profile_points(
    result: Any, grid: xr.Dataset, picks: pd.DataFrame, *, line_id: int | None = None,
    lonlat: list[list[float]] | None = None, step: float = 150.0,
) -> pd.DataFrame:
    """Surface, BedMachine, DeepTopoNet (and interval) and radar along a path.

    The path is a flight line of the region's picks (``line_id``) or a line
    drawn on the map (``lonlat``), sampled every ``step`` metres.
    """  # fmt: skip
    from pyproj import Transformer

    from engine.bedtopo.evaluate import sample_at

    # The path in EPSG:3413: the line's picks, or the drawn line densified.
    radar = None
    if line_id is not None:
        line = picks[picks["line_id"] == line_id]
        x, y = line["x"].to_numpy(), line["y"].to_numpy()
        radar = line["ice_thickness"].to_numpy()
    else:
        to_polar = Transformer.from_crs("EPSG:4326", "EPSG:3413", always_xy=True)
        corners = np.array([to_polar.transform(lon, lat) for lon, lat in lonlat])
        pieces = []
        for a, b in zip(corners[:-1], corners[1:], strict=True):
            count = max(int(np.hypot(*(b - a)) // step), 1)
            pieces.append(a + np.linspace(0, 1, count, endpoint=False)[:, None] * (b - a))
        path = np.vstack([*pieces, corners[-1:]])
        x, y = path[:, 0], path[:, 1]

    # Values along the path.
    along = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(x), np.diff(y)))]) / 1000
    surface = sample_at(grid["surface_elevation"], x, y)
    frame = pd.DataFrame({
        "distance_km": along,
        "surface": surface,
        "bedmachine": sample_at(grid["bed_bedmachine"], x, y),
        "deeptoponet": sample_at(result.prediction["bed"], x, y),
        "lower_90": sample_at(result.prediction["bed_lower_90"], x, y),
        "upper_90": sample_at(result.prediction["bed_upper_90"], x, y),
    })  # fmt: skip
    if radar is not None:
        frame["radar"] = surface - radar
    return frame


def profile_figure(frame: pd.DataFrame, title: str) -> go.Figure:
    """The profile: surface, beds, the 90 % interval and radar picks."""
    d = frame["distance_km"]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=d, y=frame["upper_90"], line=dict(width=0),
                             showlegend=False, hoverinfo="skip"))  # fmt: skip
    fig.add_trace(go.Scatter(x=d, y=frame["lower_90"], line=dict(width=0),
                             fill="tonexty", fillcolor="rgba(214,39,40,0.2)",
                             name="DeepTopoNet 90 % interval"))  # fmt: skip
    fig.add_trace(go.Scatter(x=d, y=frame["surface"], name="surface",
                             line=dict(color="#7f7f7f")))  # fmt: skip
    fig.add_trace(go.Scatter(x=d, y=frame["bedmachine"], name="BedMachine",
                             line=dict(color="#9467bd")))  # fmt: skip
    fig.add_trace(go.Scatter(x=d, y=frame["deeptoponet"], name="DeepTopoNet",
                             line=dict(color="#d62728")))  # fmt: skip
    if "radar" in frame:
        fig.add_trace(go.Scatter(x=d, y=frame["radar"], mode="markers",
                                 name="radar picks", marker=dict(color="#1f77b4")))  # fmt: skip
    fig.update_layout(title=title, height=380, xaxis_title="distance (km)",
                      yaxis_title="elevation (m)",
                      margin=dict(l=10, r=10, t=40, b=10))  # fmt: skip
    return fig


def surface_3d(result: Any, grid: xr.Dataset, *, exaggeration: float = 5.0) -> go.Figure:
    """Surface and predicted bed in 3-D (EPSG:3413 km, vertical exaggerated)."""
    bed = result.prediction["bed"].coarsen(
        x=max(result.prediction.sizes["x"] // 120, 1),
        y=max(result.prediction.sizes["y"] // 120, 1), boundary="trim").mean()
    surface = grid["surface_elevation"].sel(x=bed["x"], y=bed["y"], method="nearest")
    x, y = bed["x"].to_numpy() / 1000, bed["y"].to_numpy() / 1000
    fig = go.Figure([
        go.Surface(x=x, y=y, z=surface.to_numpy(), colorscale="Greys", opacity=0.45,
                   showscale=False, name="surface"),
        go.Surface(x=x, y=y, z=bed.to_numpy(), colorscale="Earth", name="bed",
                   colorbar=dict(title="bed (m)")),
    ])  # fmt: skip
    span = float(max(np.ptp(x), np.ptp(y)))
    fig.update_layout(
        height=520, margin=dict(l=0, r=0, t=10, b=0),
        scene=dict(xaxis_title="easting (km)", yaxis_title="northing (km)",
                   zaxis_title="elevation (m)", aspectmode="manual",
                   aspectratio=dict(x=np.ptp(x) / span, y=np.ptp(y) / span,
                                    z=0.25 * exaggeration / 5)),
    )  # fmt: skip
    return fig


def config_text(job_id: str) -> str:
    """The run's configuration as pretty JSON."""
    path = store.job_dir(job_id) / "config.json"
    return json.dumps(json.loads(path.read_text()), indent=2) if path.is_file() else ""
