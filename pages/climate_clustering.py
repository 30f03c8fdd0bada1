"""Climate clustering: DSC and HEDGTC cluster maps over time."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from engine.data.errors import DataError
from ui import climate as ui
from ui import jobs

st.title("Climate clustering")
st.markdown(
    "Group the time steps of a multivariate climate cube into recurring states "
    "(temporal mode, as the DSC and HEDGTC papers do), or group the grid cells "
    "by their series in sliding windows (spatial mode), and see the clusters "
    "over time."
)

# 1. Data: the demo cube, an upload or a file on this machine.
st.header("1. Data")
source = st.radio("Data", ui.SOURCES, key=ui.SOURCE, horizontal=True)
data: dict | None = {"source": "wfde5"}
if source == ui.SOURCES[1]:
    upload = st.file_uploader(
        f"NetCDF file (at most {ui.MAX_UPLOAD_MB} MB; CF names, a time axis, "
        "latitude and longitude)",
        type=["nc", "nc4"],
        key=ui.UPLOAD,
    )
    data = None
    if upload is not None:
        try:
            data = {"source": "file", "path": str(ui.save_upload(upload.getvalue(),
                                                                  upload.name))}
        except ValueError as error:
            st.error(str(error))
elif source == ui.SOURCES[2]:
    path = st.text_input("Path of a NetCDF file or a folder of them", key=ui.PATH)
    data = {"source": "file", "path": path} if path else None

if data is None:
    st.info("Choose a file to see what it holds.")
    st.stop()

# What the whole cube holds, before any choice.
try:
    full = ui.cube(data)
except (DataError, ValueError, OSError) as error:
    st.error(f"This data cannot be used: {error}")
    st.stop()
summary, table = ui.summary_table(full)
c1, c2, c3 = st.columns(3)
c1.metric("Time steps", f"{summary['shape'][0]:,}")
c2.metric("Grid (lat x lon)", f"{summary['shape'][1]} x {summary['shape'][2]}")
c3.metric("Step", str(summary["step"]).replace("0 days ", ""))
st.caption(
    f"{summary['start'][:16]} to {summary['end'][:16]}; latitude "
    f"{summary['lat_range'][0]:g} to {summary['lat_range'][1]:g}, longitude "
    f"{summary['lon_range'][0]:g} to {summary['lon_range'][1]:g} (degrees)."
)
st.dataframe(table, hide_index=True, width="stretch")

# The part to use: variables, area, period, daily steps.
names = list(full.data_vars)
variables = st.multiselect("Variables", names, default=names, key=ui.VARIABLES)
lat0, lat1 = summary["lat_range"]
lon0, lon1 = summary["lon_range"]
c1, c2 = st.columns(2)
lats = c1.slider("Latitude", float(lat0), float(lat1), (float(lat0), float(lat1)),
                 key=ui.BBOX + ".lat")  # fmt: skip
lons = c2.slider("Longitude", float(lon0), float(lon1), (float(lon0), float(lon1)),
                 key=ui.BBOX + ".lon")  # fmt: skip
start, end = pd.Timestamp(summary["start"]), pd.Timestamp(summary["end"])
period = st.slider("Period", start.to_pydatetime(), end.to_pydatetime(),
                   (start.to_pydatetime(), end.to_pydatetime()), key=ui.PERIOD)  # fmt: skip
daily = st.toggle("Daily means instead of the file's steps", key=ui.DAILY)
if not variables:
    st.warning("Choose at least one variable.")
    st.stop()
data = {
    **data,
    "variables": variables,
    "bbox": [lons[0], lats[0], lons[1], lats[1]],
    "period": [period[0].isoformat(), period[1].isoformat()],
    "resample": "1D" if daily else None,
}

# 2. Method and settings.
st.header("2. Method")
c1, c2, c3 = st.columns(3)
method = c1.selectbox("Method", list(ui.METHODS), key=ui.METHOD)
k = c2.number_input("Clusters (k)", 2, 20, 7, key=ui.K)
mode = c3.radio("Mode", ["temporal", "spatial"], key=ui.MODE,
                help="temporal: cluster the time steps (as the papers); spatial: "
                "cluster grid cells by their series in sliding windows")  # fmt: skip
c1, c2, c3 = st.columns(3)
anomaly = c1.selectbox("Remove before clustering", list(ui.ANOMALIES), key=ui.ANOMALY)
fill = c2.radio("Sea and missing cells", ["mask", "mean"], key=ui.FILL,
                help="mask: left out; mean: filled with the mean, as the papers")  # fmt: skip
window = c3.number_input("Window (time steps, spatial mode)", 2, 1000, 24,
                         key=ui.WINDOW, disabled=mode == "temporal")  # fmt: skip
longer = st.toggle(
    "Longer training", key=ui.LONGER,
    help="DSC and DEC: 40 pre-training epochs and up to 480 clustering "
    "iterations. HEDGTC: 10 runs per algorithm and DEC and DSC members too "
    "(3 runs each, on 2 Dask worker processes): minutes instead of seconds. "
    "Without it, HEDGTC's ensemble holds k-means, Gaussian mixture and Ward "
    "members only.",
)  # fmt: skip
prepare = {"anomaly": ui.ANOMALIES[anomaly], "fill": fill}
config = {
    "method": ui.METHODS[method],
    "k": int(k),
    "mode": mode,
    "prepare": prepare,
    "window": int(window),
    "step": int(window),
    "seeds": 3,
    "quick": not longer,
}

with st.expander("Help me choose k (elbow and silhouette of k-means)"):
    if st.button("Try k = 2 .. 10", key=ui.SWEEP):
        try:
            st.plotly_chart(ui.sweep_figure(ui.sweep(data, prepare)), key="climate.sweep_fig")
        except (DataError, ValueError) as error:
            st.error(str(error))

if st.button("Run", key=ui.RUN, type="primary"):
    jobs.submit(
        "clustering.run",
        {"data": data, "config": config},
        label=f"{config['method']}, k={k}, {mode}, {len(variables)} variables"
        + (", daily" if daily else ""),
    )

job_id = jobs.active_job_id("clustering.run")
state = None
if job_id is None:
    st.info("Runs appear here: progress, then the cluster maps.")
else:
    state = jobs.progress_panel(
        job_id,
        lambda reports: st.plotly_chart(
            ui.progress_figure(reports), key=f"climate.progress.{len(reports)}"
        ),
    )

# 3. Views of the active run, when it is done.
if state is not None and state.state == "done":
    try:
        result = ui.load_run(job_id, state.finished)
        run_data = ui.store.read_json(ui.store.job_dir(job_id) / "data.json")
        run_cube = ui.cube(run_data)
    except (DataError, ValueError, OSError) as error:
        st.error(f"The results of this run cannot be read: {error}")
        st.stop()
    labels = result.labels
    st.header("3. Clusters")

    if "time" in labels.dims:
        # Temporal mode: the timeline, and one time step on the maps.
        st.subheader("Timeline")
        st.plotly_chart(ui.timeline_figure(labels), key="climate.timeline")
        times = pd.to_datetime(labels["time"].to_numpy())
        index = st.slider("Time step", 0, len(times) - 1, 0, key=ui.TIME)
        variable = st.selectbox("Variable on the map", list(run_cube.data_vars),
                                key=ui.MAP_VARIABLE)  # fmt: skip
        cluster = int(labels.isel(time=index))
        field = run_cube[variable].sel(time=times[index], method="nearest")
        st.markdown(f"**{times[index]:%Y-%m-%d %H:%M}: cluster {cluster}**")
        left, right = st.columns(2)
        left.pydeck_chart(ui.deck_map(field, cluster=cluster), key="climate.deck")
        right.plotly_chart(
            ui.field_heatmap(field, title=f"{variable} at {times[index]:%Y-%m-%d %H:%M}"),
            key="climate.field",
        )
        with st.expander("Play through time"):
            st.plotly_chart(ui.animated_field(run_cube[variable], labels),
                            key="climate.play")  # fmt: skip
        st.subheader("Composites: each cluster's mean anomaly")
        st.plotly_chart(ui.composites_figure(result.composites), key="climate.comp")
    else:
        # Spatial mode: the label map of the window at the slider.
        st.subheader("Cluster map per window (colours stable over time)")
        starts = pd.to_datetime(labels["window_start"].to_numpy())
        index = st.slider("Window", 0, len(starts) - 1, 0, key=ui.TIME)
        st.plotly_chart(
            ui.label_map_figure(labels.isel(window_start=index),
                                title=f"window from {starts[index]:%Y-%m-%d %H:%M}"),
            key="climate.labelmap",
        )  # fmt: skip

    st.subheader("Metrics (in the input space)")
    rows = ui.metrics_of_runs_on(run_data, current=job_id)
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
    st.caption(
        "Internal scores are computed on the prepared data, not in a network's "
        "latent space, where they would be inflated. Stability: mean adjusted "
        "Rand index between runs with different seeds. One row per finished "
        "run on this same data (this run first)."
    )

    if result.stages:
        st.subheader("HEDGTC stages")
        matrices = result.stages.get("co_association", {})
        cols = st.columns(max(len(matrices), 1))
        for column, (name, matrix) in zip(cols, matrices.items()):
            column.plotly_chart(ui.matrix_figure(matrix, title=f"co-association: {name}"),
                                key=f"climate.coassoc.{name}")  # fmt: skip
        agreement = result.stages.get("agreement")
        if agreement is not None:
            st.metric("Agreement of the two consensus results (ARI)", f"{agreement:.3f}")
        attention = result.stages.get("attention")
        if attention is not None and len(attention):
            st.markdown("Strongest graph-attention edges (which time steps attend to which)")
            st.dataframe(attention.head(20), hide_index=True, width="stretch")

    st.subheader("Downloads")
    cols = st.columns(4)
    for column, (label, path) in zip(cols, ui.run_files(job_id).items()):
        column.download_button(label, path.read_bytes(), file_name=path.name,
                               key=f"climate.dl.{path.name}", on_click="ignore")  # fmt: skip

# 4. Earlier runs.
st.header("4. Runs")
done = [job for job in jobs.runs_table("clustering.run") if job.state == "done"]
if done:
    labels_by_id = {job.job_id: f"{job.job_id}: {job.label}" for job in done}
    pick = st.selectbox("Open a run", list(labels_by_id), format_func=labels_by_id.get,
                        key=ui.OPEN_RUN)  # fmt: skip
    if st.button("Open", key="climate.open") and pick:
        jobs.set_active_job(pick)
        st.rerun()
