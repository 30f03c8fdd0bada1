"""Streamlit caches around engine calls that the pages repeat."""

from __future__ import annotations

import streamlit as st

from engine.data import overview, registry
from engine.data.errors import DataNotFoundError


@st.cache_data(show_spinner="Reading the demo data...")
def demo_footprints(data_dir: str | None, cache_dir: str) -> tuple[list, list[str]]:
    """Footprints of the demo files; keyed on where the files are looked up."""
    return overview.demo_footprints()


def current_demo_footprints() -> tuple[list, list[str]]:
    """Footprints for the data directory and cache in force now."""
    data_dir = registry.get_data_dir()
    return demo_footprints(
        str(data_dir) if data_dir else None, str(registry.get_cache_dir())
    )


@st.cache_data
def dataset_table(data_dir: str | None, cache_dir: str) -> list[dict[str, str]]:
    """One row per registered data set: provenance and where it was found."""
    rows = []
    for entry in registry.datasets():
        found = []
        for item in entry.files:
            try:
                path = registry.locate(entry.key, item.name)
            except DataNotFoundError:
                continue
            found.append(str(path.parent))
        where = (
            f"{len(found)}/{len(entry.files)} files in {found[0]}"
            if found
            else f"not here: python -m engine data fetch {entry.key}"
        )
        rows.append(
            {
                "data set": entry.title,
                "key": entry.key,
                "origin": entry.origin,
                "licence": entry.licence,
                "citation": " ".join(entry.citations),
                "on this machine": where,
            }
        )
    return rows


def current_dataset_table() -> list[dict[str, str]]:
    """The data-set table for the data directory and cache in force now."""
    data_dir = registry.get_data_dir()
    return dataset_table(
        str(data_dir) if data_dir else None, str(registry.get_cache_dir())
    )
