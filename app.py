"""Entry point of the dashboard: ``streamlit run app.py``.

Registers the home page and the feature pages that exist; each page is a
thin script under ``pages/`` that calls the engine through ``ui/``.
"""

from pathlib import Path

import streamlit as st

ROOT = Path(__file__).resolve().parent

# Feature pages in menu order: (script, title). A page is listed only once
# its script exists. No icons: Streamlit fetches material icons from the
# internet, and emoji need an emoji font that kiosk browsers may lack.
FEATURE_PAGES = [
    ("pages/bed_topography.py", "Bed topography"),
    ("pages/climate_clustering.py", "Climate clustering"),
    ("pages/backprop.py", "Backpropagation"),
]

st.set_page_config(
    page_title="Greenland bed & climate clustering", layout="wide"
)

home = st.Page("pages/home.py", title="Home", default=True)
features = [
    st.Page(script, title=title)
    for script, title in FEATURE_PAGES
    if (ROOT / script).is_file()
]
st.navigation([home, *features]).run()
