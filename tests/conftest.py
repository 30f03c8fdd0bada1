"""Shared fixtures: where the real data lives, and tiny seeded inputs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

#: Environment variable naming the directory searched first for data files.
DATA_DIR_ENV = "GREENBED_DATA_DIR"

FETCH_HINT = (
    "set GREENBED_DATA_DIR to a folder holding the demo data sets, or run "
    "'python -m engine data fetch --all' to download them into the cache"
)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The data directory named by ``GREENBED_DATA_DIR``; skip when unset."""
    value = os.environ.get(DATA_DIR_ENV)
    if not value or not Path(value).is_dir():
        pytest.skip(f"real data not found: {FETCH_HINT}")
    return Path(value)


def _real_file(dataset: str, filename: str) -> Path:
    """A demo file from the data directory or the cache; skip when absent."""
    from engine.data.errors import DataNotFoundError
    from engine.data.registry import locate

    try:
        return locate(dataset, filename)
    except DataNotFoundError:
        pytest.skip(f"{filename} not found: {FETCH_HINT}")


@pytest.fixture(scope="session")
def helheim_grid_path() -> Path:
    """The Helheim HDF5 grid in the DeepTopoNet schema."""
    return _real_file("helheim", "subdomain_data.h5")


@pytest.fixture(scope="session")
def helheim_bedmachine_path() -> Path:
    """The BedMachine Greenland v6.5 subset next to the Helheim grid."""
    return _real_file("helheim", "subdomain_bed.nc")


@pytest.fixture(scope="session")
def helheim_radar_mat_path() -> Path:
    """Helheim radar thickness picks, MATLAB v7.3."""
    return _real_file("helheim", "flightTracks.mat")


@pytest.fixture(scope="session")
def helheim_radar_csv_path() -> Path:
    """Helheim radar thickness picks, plain CSV (a local copy of the .mat)."""
    return _real_file("helheim", "flightTracks_helheim.csv")


@pytest.fixture(scope="session")
def narsap_radar_mat_path() -> Path:
    """Narsap Sermia radar thickness picks, MATLAB v5."""
    return _real_file("narsap", "ProcessedTracks.mat")


@pytest.fixture(scope="session")
def bed_points_79n_path() -> Path:
    """79N Glacier bed-elevation points (X, Y, Bed)."""
    return _real_file("nioghalvfjerds_79n", "Nioghalvfjerds_bed_data.csv")


@pytest.fixture(scope="session")
def wfde5_dir() -> Path:
    """Folder of the six WFDE5 hourly NetCDF files (UK, January 2017)."""
    return _real_file("wfde5_uk_201701", "air_temperature.nc").parent


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator, so that every test input is reproducible."""
    return np.random.default_rng(20261203)
