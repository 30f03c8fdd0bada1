"""Bed topography: draw a region, run DeepTopoNet, compare with BedMachine."""

from __future__ import annotations

import streamlit as st
from streamlit_folium import st_folium

from engine.bedtopo.errors import BedTopoError
from engine.data.errors import DataError
from engine.data.regions import PRESET_REGIONS
from ui import bedtopo as ui
from ui import jobs

st.title("Bed topography")
st.markdown(
    "Draw a region on the Helheim demo grid, train DeepTopoNet on its radar and "
    "BedMachine, and compare the bed it maps with BedMachine and the radar picks "
    "that were held out."
)

# The demo data; without it, say how to get it and stop.
try:
    grid, picks = ui.demo_data()
except DataError as error:
    st.error(f"The Helheim demo data is not available: {error}")
    st.stop()

# 1. The region: drawn on the map, or a preset.
st.header("1. Region")
left, right = st.columns([3, 2])
with right:
    st.markdown("**Presets**")
    if st.button("Whole Helheim demo grid", key="bed.preset_helheim"):
        st.session_state[ui.REGION] = None
    with st.expander("Upernavik Isstrom (the paper's region)"):
        lon0, lat0, lon1, lat1 = PRESET_REGIONS["Upernavik Isstrom"]
        st.markdown(
            f"About {lat0}-{lat1} N, {-lon1}-{-lon0} W. No data for it ships with "
            "the dashboard: BedMachine and radar need a free NASA Earthdata login "
            "(https://urs.earthdata.nasa.gov). With one, fetch them from a shell:"
        )
        st.code(
            'python -m engine data bedmachine --preset "Upernavik Isstrom"\n'
            'python -m engine data radar --preset "Upernavik Isstrom"',
            language="bash",
        )
        st.caption(
            "Runs on the page use the Helheim demo grid, which also carries "
            "surface velocity, SMB and dh/dt; a grid of those fields for "
            "Upernavik is not fetched by the dashboard yet."
        )
with left:
    region = st.session_state.get(ui.REGION)
    output = st_folium(
        ui.region_map(region),
        key=ui.MAP_KEY,
        height=520,
        use_container_width=True,
        returned_objects=["last_active_drawing", "all_drawings"],
    )
    drawn = ui.drawn_region(output)
    if drawn is not None and drawn != region:
        st.session_state[ui.REGION] = region = drawn
    st.caption(
        "Draw a rectangle or polygon with the tools on the left of the map; the "
        "newest one is the region. Without one, the whole demo grid is used."
    )

# The region checked at once, summarised, or the engine's message.
with right:
    try:
        summary = ui.region_summary(region)
    except DataError as error:
        st.error(str(error))
        summary = None
    if summary:
        st.metric("Area", f"{summary['area_km2']:,.0f} km²")
        st.metric("Cells at 150 m", f"{summary['cells']:,}")
        st.metric("Radar picks inside", f"{summary['picks']:,}")
        st.metric("Flight lines inside", f"{summary['lines']:,}")
        rows, cols = summary["shape"]
        st.caption(
            f"The run uses the region's bounding window on the grid: {rows} x "
            f"{cols} cells with {summary['window_picks']:,} radar picks."
        )

# 2. Settings and the run.
st.header("2. Run")
c1, c2, c3 = st.columns(3)
preset = c1.radio("Configuration", list(ui.PRESETS), key=ui.PRESET)
resolution = c2.radio(
    "Output resolution", list(ui.RESOLUTIONS), index=1, key=ui.RESOLUTION,
    disabled=ui.PRESETS[preset] == "paper",
    help="The paper configuration predicts on the 150 m grid.",
)
split = c3.radio("Hold-out for the scores", list(ui.SPLITS), key=ui.SPLIT)

if st.button("Run DeepTopoNet", key=ui.RUN, type="primary", disabled=summary is None):
    params = ui.run_params(region, preset, resolution, split)
    jobs.submit("bedtopo.experiment", params, label=ui.run_label(params, summary))

job_id = jobs.active_job_id("bedtopo.experiment")
if job_id is None:
    st.info("Runs appear here: progress, then the results.")
    state = None
else:
    state = jobs.progress_panel(
        job_id,
        lambda reports: st.plotly_chart(
            ui.progress_figure(reports), key=f"bed.progress.{len(reports)}"
        ),
    )

# 3. Results of the active run, when it is done.
if state is not None and state.state == "done":
    try:
        result = ui.load_run(job_id, state.finished)
        _, run_grid, run_picks = ui.cut_region(
            grid, picks, ui.region_of_run(job_id)
        )
    except (DataError, BedTopoError, OSError) as error:
        st.error(f"The results of this run cannot be read: {error}")
        st.stop()

    st.header("3. Results")
    layers = ui.result_layers(result, run_grid)
    result_output = st_folium(
        ui.result_map(result, run_grid),
        key=f"bed.result_map.{job_id}",
        height=560,
        use_container_width=True,
        returned_objects=["last_active_drawing"],
    )
    st.plotly_chart(ui.legend_figure(layers), key="bed.legend")

    st.subheader("Scores on held-out radar")
    st.dataframe(result.table, width="stretch")
    st.caption(
        "Every method on the same split: the radar picks of the held-out lines "
        "(or blocks) were never seen in training. BedMachine was built with "
        "these picks, so its score is an optimistic bound."
    )

    st.subheader("Maps in EPSG:3413")
    names = list(layers)
    cols = st.columns(2)
    for index, name in enumerate(names):
        da, _, colorscale, symmetric = layers[name]
        cols[index % 2].plotly_chart(
            ui.heatmap(da, title=name, colorscale=colorscale, symmetric=symmetric),
            key=f"bed.heat.{index}",
        )

    st.subheader("Profile")
    drawn = ui.drawn_line(result_output)
    along = st.radio(
        "Along", ["a flight line", "the line drawn on the result map"],
        horizontal=True, key="bed.profile_along", disabled=drawn is None,
        help="Draw a line with the line tool on the result map to use it.",
    )
    if along == "a flight line" or drawn is None:
        counts = run_picks["line_id"].value_counts()
        lines = [int(v) for v, n in counts.items() if n >= 3]
        line = st.selectbox(
            "Flight line (longest first)", lines, key=ui.PROFILE_LINE,
            format_func=lambda v: f"line {v} ({counts[v]} picks)",
        )
        if line is not None:
            frame = ui.profile_points(result, run_grid, run_picks, line_id=line)
            st.plotly_chart(
                ui.profile_figure(frame, f"Flight line {line}"), key="bed.profile"
            )
        else:
            st.info("No flight line with three or more picks lies in this region.")
    else:
        frame = ui.profile_points(result, run_grid, run_picks, lonlat=drawn)
        st.plotly_chart(
            ui.profile_figure(frame, "Along the drawn line"), key="bed.profile"
        )

    st.subheader("3-D view")
    st.plotly_chart(ui.surface_3d(result, run_grid), key="bed.3d")

    st.subheader("Downloads")
    cols = st.columns(4)
    for column, (label, path) in zip(cols, ui.run_files(job_id).items()):
        column.download_button(
            label, path.read_bytes(), file_name=path.name, key=f"bed.dl.{path.name}",
            on_click="ignore",
        )
    cols[3].download_button(
        "bed (GeoTIFF)", ui.geotiff_bytes(job_id, result.prediction),
        file_name="prediction_bed.tif", key="bed.dl.tif", on_click="ignore",
    )

# 4. Earlier runs: reopen one, or compare two.
st.header("4. Runs")
earlier = jobs.runs_table("bedtopo.experiment")
done = [job for job in earlier if job.state == "done"]
if done:
    labels = {job.job_id: f"{job.job_id}: {job.label}" for job in done}
    pick = st.selectbox("Open a run", list(labels), format_func=labels.get,
                        key=ui.OPEN_RUN)  # fmt: skip
    if st.button("Open", key="bed.open") and pick:
        jobs.set_active_job(pick)
        st.rerun()
    pair = st.multiselect("Compare two runs", list(labels), format_func=labels.get,
                          max_selections=2, key=ui.COMPARE)  # fmt: skip
    if len(pair) == 2:
        cols = st.columns(2)
        for column, other in zip(cols, pair):
            finished = next(job.finished for job in done if job.job_id == other)
            other_result = ui.load_run(other, finished)
            _, other_grid, _ = ui.cut_region(grid, picks, ui.region_of_run(other))
            column.caption(labels[other])
            column.dataframe(other_result.table, width="stretch")
            da, _, colorscale, _ = ui.result_layers(other_result, other_grid)[
                "DeepTopoNet bed"
            ]
            column.plotly_chart(
                ui.heatmap(da, title="DeepTopoNet bed", colorscale=colorscale),
                key=f"bed.compare.{other}",
            )
