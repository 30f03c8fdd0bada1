"""Streamlit helpers of the climate-clustering page: state, caches, figures."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import pydeck as pdk
import streamlit as st
import xarray as xr
from plotly.subplots import make_subplots

from engine.data.climate import describe_cube
from engine.jobs import store
from engine.jobs.clustering_task import open_source

# Session-state keys of the page.
SOURCE = "climate.source"
UPLOAD = "climate.upload"
PATH = "climate.path"
VARIABLES = "climate.variables"
BBOX = "climate.bbox"
PERIOD = "climate.period"
DAILY = "climate.daily"
ANOMALY = "climate.anomaly"
FILL = "climate.fill"
METHOD = "climate.method"
K = "climate.k"
MODE = "climate.mode"
WINDOW = "climate.window"
LONGER = "climate.longer"
RUN = "climate.run"
SWEEP = "climate.sweep"
TIME = "climate.time"
MAP_VARIABLE = "climate.map_variable"
OPEN_RUN = "climate.open_run"

#: Where the data comes from.
SOURCES = ("WFDE5 demo (UK, January 2017, hourly)", "Upload a NetCDF file",
           "A NetCDF file on this machine")  # fmt: skip

#: Largest upload accepted, in megabytes (the server's own limit is higher).
MAX_UPLOAD_MB = 100

#: Methods in plain words -> engine names.
METHODS = {
    "HEDGTC (ensembles + graph attention)": "hedgtc",
    "DSC (CNN-LSTM autoencoder)": "dsc",
    "DEC (dense autoencoder)": "dec",
    "k-means": "kmeans",
    "Ward (agglomerative)": "ward",
    "Gaussian mixture": "gmm",
}

#: Cycles that can be removed before clustering.
ANOMALIES = {"None": None, "Mean diurnal cycle": "diurnal",
             "Mean seasonal cycle (day of year)": "dayofyear"}  # fmt: skip

#: Qualitative colours of clusters (stable: cluster k is always colour k).
COLOURS = px.colors.qualitative.Set2 + px.colors.qualitative.Dark2


def colour(k: int) -> str:
    """The colour of cluster ``k``."""
    return COLOURS[int(k) % len(COLOURS)]


# ---------------------------------------------------------------------------
# Data
# ---------------------------------------------------------------------------


@st.cache_data(show_spinner="Reading the climate data...", max_entries=8)
def cube(data: dict[str, Any]) -> xr.Dataset:
    """The cube the job will see, for the summary (cached per description)."""
    return open_source(**data)


def summary_table(ds: xr.Dataset) -> tuple[dict[str, Any], pd.DataFrame]:
    """What a cube holds: grid, period, and per variable units and missing share."""
    summary = describe_cube(ds).to_dict()
    rows = pd.DataFrame(
        [
            {
                "variable": v["name"],
                "long name": v["long_name"] or "",
                "units": v["units"] or "",
                "missing cells (%)": round(100 * (v["missing_share"] or 0), 1),
            }
            for v in summary["variables"]
        ]
    )
    return summary, rows


def save_upload(content: bytes, name: str) -> Path:
    """Keep an uploaded file under a name the server chooses; return its path.

    The user's file name is kept only as a label; the stored name is random,
    so no path separator or ``..`` in it can reach the file system.
    """
    if len(content) > MAX_UPLOAD_MB * 1_000_000:
        raise ValueError(
            f"{len(content) / 1e6:,.0f} MB is over the {MAX_UPLOAD_MB} MB limit; "
            "cut the file to fewer variables, a smaller area or a shorter period"
        )
    folder = store.runs_dir() / "uploads"
    folder.mkdir(exist_ok=True)
    path = folder / f"{secrets.token_hex(8)}.nc"
    tmp = path.with_suffix(".part")
    tmp.write_bytes(content)
    tmp.replace(path)
    return path


@st.cache_data(show_spinner="Trying k = 2 .. 10 with k-means...", max_entries=8)
def sweep(data: dict[str, Any], prepare: dict[str, Any]) -> pd.DataFrame:
    """Inertia and cosine silhouette of k-means for k = 2 .. 10."""
    from engine.clustering.prepare import PrepareConfig
    from engine.clustering.runner import sweep_k

    return sweep_k(open_source(**data), PrepareConfig(**prepare), range(2, 11))


@st.cache_resource(max_entries=6, show_spinner="Reading the run's results...")
def load_run(job_id: str, finished: float | None) -> Any:
    """The clustering result of a finished job (cached per job and finish)."""
    from engine.clustering.runner import load_clustering

    return load_clustering(store.job_dir(job_id))


def metrics_of_runs_on(data: dict[str, Any], *, current: str) -> list[dict[str, Any]]:
    """Metrics of every finished clustering run on the same data, current first."""
    rows = []
    for job in store.list_jobs():
        if job.task != "clustering.run" or job.state != "done":
            continue
        folder = store.job_dir(job.job_id)
        if store.read_json(folder / "data.json") != data:
            continue
        metrics = store.read_json(folder / "metrics.json", {}) or {}
        row = {"run": job.job_id, "what": job.label}
        row.update({k: v for k, v in metrics.items() if isinstance(v, (int, float))})
        rows.insert(0, row) if job.job_id == current else rows.append(row)
    return rows


def run_files(job_id: str) -> dict[str, Path]:
    """Downloadable files of a run that exist."""
    folder = store.job_dir(job_id)
    names = {
        "labels (CSV)": "labels.csv",
        "labels (NetCDF)": "labels.nc",
        "composites (NetCDF)": "composites.nc",
        "metrics (CSV)": "metrics.csv",
    }
    return {label: folder / name for label, name in names.items()
            if (folder / name).is_file()}  # fmt: skip


# ---------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------


def sweep_figure(table: pd.DataFrame) -> go.Figure:
    """Elbow (inertia) and cosine silhouette against k."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=table["k"], y=table["inertia"], name="inertia"))
    fig.add_trace(
        go.Scatter(x=table["k"], y=table["silhouette_cosine"], name="cosine silhouette"),
        secondary_y=True,
    )
    fig.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10),
                      xaxis_title="k")  # fmt: skip
    return fig


def progress_figure(reports: list[dict[str, Any]]) -> go.Figure:
    """Share of the run done per stage over the reports."""
    frame = pd.DataFrame(reports)
    fig = go.Figure()
    if "fraction" in frame:
        fig.add_trace(go.Scatter(y=frame["fraction"], mode="lines+markers",
                                 text=frame.get("stage"), name="done"))  # fmt: skip
    fig.update_layout(height=220, margin=dict(l=10, r=10, t=10, b=10),
                      yaxis_title="share done", xaxis_title="report")  # fmt: skip
    return fig


def timeline_figure(labels: xr.DataArray) -> go.Figure:
    """A coloured strip of cluster labels over time, the date on hover."""
    values = labels.to_numpy().astype(int)
    k = int(values.max()) + 1
    scale = []
    for index in range(k):
        scale += [(index / k, colour(index)), ((index + 1) / k, colour(index))]
    fig = go.Figure(
        go.Heatmap(
            x=pd.to_datetime(labels["time"].to_numpy()),
            y=["cluster"],
            z=[values],
            zmin=-0.5,
            zmax=k - 0.5,
            colorscale=scale,
            colorbar=dict(tickvals=list(range(k)), title="cluster", len=1.0,
                          thickness=14),
            hovertemplate="%{x}<br>cluster %{z}<extra></extra>",
        )
    )
    fig.update_layout(height=60 + 22 * k, margin=dict(l=10, r=10, t=10, b=10))
    return fig


def field_heatmap(da: xr.DataArray, *, title: str, colorscale: str = "Viridis",
                  zmid: float | None = None) -> go.Figure:
    """A (lat, lon) field as a heatmap, equal degrees on both axes."""
    fig = go.Figure(go.Heatmap(x=da["lon"], y=da["lat"], z=da.to_numpy(),
                               colorscale=colorscale, zmid=zmid,
                               colorbar=dict(title=da.attrs.get("units", ""))))  # fmt: skip
    fig.update_layout(title=title, height=380, margin=dict(l=10, r=10, t=40, b=10),
                      xaxis_title="longitude", yaxis_title="latitude")  # fmt: skip
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig


def label_map_figure(labels: xr.DataArray, *, title: str) -> go.Figure:
    """A (lat, lon) map of cluster labels in the stable colours; sea blank."""
    values = labels.to_numpy().astype(float)
    values[values < 0] = np.nan
    k = int(np.nanmax(values)) + 1 if np.isfinite(values).any() else 1
    scale = []
    for index in range(k):
        scale += [(index / k, colour(index)), ((index + 1) / k, colour(index))]
    fig = go.Figure(go.Heatmap(x=labels["lon"], y=labels["lat"], z=values,
                               zmin=-0.5, zmax=k - 0.5, colorscale=scale,
                               colorbar=dict(tickvals=list(range(k)), title="cluster")))  # fmt: skip
    fig.update_layout(title=title, height=380, margin=dict(l=10, r=10, t=40, b=10))
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig


def deck_map(da: xr.DataArray, *, cluster: int | None) -> pdk.Deck:
    """A field on a pydeck map over an empty local style (works offline)."""
    lat = da["lat"].to_numpy()
    lon = da["lon"].to_numpy()
    half_lat = abs(float(lat[1] - lat[0])) / 2 if lat.size > 1 else 0.25
    half_lon = abs(float(lon[1] - lon[0])) / 2 if lon.size > 1 else 0.25
    values = da.to_numpy()
    lo, hi = np.nanpercentile(values, [2, 98]) if np.isfinite(values).any() else (0, 1)

    # One polygon per land cell, coloured by its value.
    rows = []
    for i, la in enumerate(lat):
        for j, lo_ in enumerate(lon):
            value = values[i, j]
            if not np.isfinite(value):
                continue
            t = float(np.clip((value - lo) / max(hi - lo, 1e-12), 0, 1))
            rows.append({
                "polygon": [[lo_ - half_lon, la - half_lat], [lo_ + half_lon, la - half_lat],
                            [lo_ + half_lon, la + half_lat], [lo_ - half_lon, la + half_lat]],
                "colour": [int(255 * t), int(80 + 100 * (1 - t)), int(255 * (1 - t)), 200],
                "value": f"{value:.4g}",
            })  # fmt: skip
    layer = pdk.Layer("PolygonLayer", rows, get_polygon="polygon",
                      get_fill_color="colour", pickable=True, stroked=False)  # fmt: skip
    view = pdk.ViewState(latitude=float(lat.mean()), longitude=float(lon.mean()),
                         zoom=3.6)  # fmt: skip
    tip = {"text": "{value} " + da.attrs.get("units", "")}
    if cluster is not None:
        tip["text"] += f"\ncluster {cluster} at this time"
    # An empty local style: without one, Streamlit fetches a basemap style
    # from the internet, and offline the chart stays blank.
    return pdk.Deck(layers=[layer], initial_view_state=view, tooltip=tip,
                    map_style="/app/static/map_style_empty.json")  # fmt: skip


def animated_field(da: xr.DataArray, labels: xr.DataArray, *, frames: int = 120
                   ) -> go.Figure:
    """A field over time with a play button; each frame names its cluster.

    At most ``frames`` time steps are shown, evenly spaced.
    """
    times = pd.to_datetime(labels["time"].to_numpy())
    picks = np.unique(np.linspace(0, len(times) - 1, min(frames, len(times))).astype(int))
    values = da.sel(time=labels["time"]).to_numpy()
    lo, hi = np.nanpercentile(values, [2, 98])

    def heat(i: int) -> go.Heatmap:
        return go.Heatmap(x=da["lon"], y=da["lat"], z=values[i], zmin=lo, zmax=hi,
                          colorscale="Viridis",
                          colorbar=dict(title=da.attrs.get("units", "")))  # fmt: skip

    def title(i: int) -> str:
        return f"{da.name} at {times[i]:%Y-%m-%d %H:%M}: cluster {int(labels[i])}"

    fig = go.Figure(
        data=[heat(picks[0])],
        frames=[go.Frame(data=[heat(i)], name=str(i),
                         layout=go.Layout(title=title(i))) for i in picks],
    )  # fmt: skip
    fig.update_layout(
        title=title(picks[0]), height=420, margin=dict(l=10, r=10, t=60, b=10),
        updatemenus=[dict(type="buttons", showactive=False, x=0, y=1.15,
                          xanchor="left", buttons=[
            dict(label="Play", method="animate",
                 args=[None, dict(frame=dict(duration=300, redraw=True),
                                  fromcurrent=True)]),
            dict(label="Pause", method="animate",
                 args=[[None], dict(mode="immediate",
                                    frame=dict(duration=0, redraw=False))]),
        ])],
    )  # fmt: skip
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig


def composites_figure(composites: xr.Dataset) -> go.Figure:
    """Small multiples: each cluster (rows) by each variable (columns)."""
    names = [n for n, v in composites.data_vars.items() if {"lat", "lon"} <= set(v.dims)]
    clusters = composites["cluster"].to_numpy()
    fig = make_subplots(rows=len(clusters), cols=len(names),
                        subplot_titles=[f"{n} (cluster {c})" for c in clusters for n in names],
                        horizontal_spacing=0.02, vertical_spacing=0.03)  # fmt: skip
    for r, c in enumerate(clusters, start=1):
        for col, name in enumerate(names, start=1):
            field = composites[name].sel(cluster=c)
            limit = float(np.nanmax(np.abs(composites[name].to_numpy())) or 1.0)
            fig.add_trace(go.Heatmap(x=field["lon"], y=field["lat"], z=field.to_numpy(),
                                     colorscale="RdBu_r", zmin=-limit, zmax=limit,
                                     showscale=False), row=r, col=col)  # fmt: skip
    fig.update_layout(height=170 * len(clusters), margin=dict(l=5, r=5, t=30, b=5))
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    fig.update_annotations(font_size=10)
    return fig


def matrix_figure(matrix: np.ndarray, *, title: str) -> go.Figure:
    """A (T, T) co-association matrix."""
    fig = go.Figure(go.Heatmap(z=matrix, colorscale="Blues", zmin=0, zmax=1))
    fig.update_layout(title=title, height=330, margin=dict(l=10, r=10, t=40, b=10),
                      xaxis_title="time step", yaxis_title="time step")  # fmt: skip
    fig.update_yaxes(scaleanchor="x", scaleratio=1, autorange="reversed")
    return fig
