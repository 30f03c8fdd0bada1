"""Home page: where data is available, what it is, and the feature pages."""

from pathlib import Path

import streamlit as st
from streamlit_folium import st_folium

from ui import cache, maps, state
from ui.assets import assets_present

ROOT = Path(__file__).resolve().parents[1]

st.title("Greenland bed topography and climate clustering")
st.markdown(
    "Map the bed under the Greenland ice with a deep network trained on radar "
    "ice thickness and BedMachine, see how deep clustering groups climate data "
    "over time, and step through backpropagation as a chain of Jacobians."
)

# The feature pages that exist so far.
pages = [
    ("pages/bed_topography.py", "Bed topography: draw a region, run DeepTopoNet"),
    ("pages/climate_clustering.py", "Climate clustering: DSC and HEDGTC over time"),
    ("pages/backprop.py", "Backpropagation as a product of Jacobians"),
]
available = [(script, label) for script, label in pages if (ROOT / script).is_file()]
if available:
    columns = st.columns(len(available))
    for column, (script, label) in zip(columns, available):
        column.page_link(script, label=label)

# The map of what data is at hand.
st.subheader("Where data is available")
footprints, problems = cache.current_demo_footprints()
left, right = st.columns([2, 1])
view = left.radio(
    "Zoom to",
    list(maps.VIEWS),
    horizontal=True,
    key=state.HOME_VIEW,
)
basemap = right.toggle(
    "OpenStreetMap basemap (needs the internet)", key=state.HOME_BASEMAP
)
center, zoom = maps.VIEWS[view]
m = maps.greenland_map(basemap=basemap, center=center, zoom=zoom)
maps.add_footprints(m, footprints)
maps.finish_map(m)
st_folium(m, key="home_map", height=560, use_container_width=True, returned_objects=[])
legend = ", ".join(
    f"{f.label} ({', '.join(f'{v:,} {k}' for k, v in f.details.items())})"
    for f in footprints
)
st.caption(f"On the map: {legend or 'no demo data found'}. EPSG:3413 data shown in "
           "longitude/latitude.")
if not assets_present():
    st.caption(
        "Map scripts load from the internet: run `python -m ui.assets` once to "
        "serve them locally and use the map offline."
    )
for problem in problems:
    st.info(problem)

# Provenance of every registered data set.
st.subheader("Data sets")
st.dataframe(cache.current_dataset_table(), hide_index=True, width="stretch")
