"""Tests of cube-to-samples preparation, ``engine.clustering.prepare``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from engine.clustering.errors import ClusteringConfigError, ClusteringInputError
from engine.clustering.prepare import (
    PrepareConfig,
    pad_grid,
    padded_size,
    prepare_samples,
    remove_cycle,
)
from engine.clustering.synthetic import PlantedConfig, PlantedSet, make_planted

#: A small planted cube: 30 days, 6 x 7 cells, 2 variables.
SMALL = PlantedConfig(seed=2, n_time=30, n_lat=6, n_lon=7, n_variables=2)


@pytest.fixture(scope="module")
def planted() -> PlantedSet:
    """One small planted set shared by the read-only tests."""
    return make_planted(SMALL)


def _hourly_cube(rng: np.random.Generator, *, days: int = 4) -> xr.Dataset:
    """An hourly 3 x 4 cube with a strong diurnal cycle and one sea cell."""
    time = pd.date_range("2017-01-01", periods=24 * days, freq="1h")
    hours = time.hour.values[:, None, None]
    cycle = 5.0 * np.sin(2 * np.pi * hours / 24)
    values = 280.0 + cycle + rng.normal(size=(len(time), 3, 4))
    values[:, 0, 0] = np.nan
    return xr.Dataset(
        {"Tair": (("time", "lat", "lon"), values, {"units": "K"})},
        coords={
            "time": time,
            "lat": [50.0, 50.5, 51.0],
            "lon": [-3.0, -2.5, -2.0, -1.5],
        },
    )


def test_shapes_and_feature_order(planted) -> None:
    """X is (time, land cells x variables), variable by variable."""
    samples = prepare_samples(planted.cube)
    n_land = int(planted.land.sum())

    assert samples.X.shape == (30, 2 * n_land)
    assert samples.X.dtype == np.float32
    np.testing.assert_array_equal(samples.mask, planted.land)
    assert samples.variables == ("t2m", "sp")
    assert samples.units == ("K", "Pa")
    assert samples.grid is None

    # The first n_land features are t2m, scaled with t2m's statistics.
    t2m = planted.cube["t2m"].values[:, planted.land]
    expected = (t2m - samples.mean[0]) / samples.scale[0]
    # float32 storage of values of order 1: relative error below 1e-6.
    np.testing.assert_allclose(samples.X[:, :n_land], expected, rtol=0, atol=1e-5)


def test_zscore_statistics_are_over_land_and_all_times(planted) -> None:
    """Mean and scale come from land cells only, pooled over time."""
    samples = prepare_samples(planted.cube)

    # The reference statistics, computed directly on the land values.
    sp = planted.cube["sp"].values[:, planted.land]
    np.testing.assert_allclose(samples.mean[1], sp.mean(), rtol=1e-12)
    np.testing.assert_allclose(samples.scale[1], sp.std(), rtol=1e-12)

    # Each variable's block of X then has mean 0 and sd 1 (float32 sums).
    blocks = samples.X.reshape(30, 2, -1).astype(np.float64)
    np.testing.assert_allclose(blocks.mean(axis=(0, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(blocks.std(axis=(0, 2)), 1.0, atol=1e-5)


def test_variable_subset(planted) -> None:
    """A single named variable is kept alone."""
    samples = prepare_samples(planted.cube, PrepareConfig(variables="sp"))
    assert samples.variables == ("sp",)
    assert samples.X.shape == (30, int(planted.land.sum()))


def test_masked_grid_has_zeros_over_sea_and_mask(planted) -> None:
    """The grid for networks: zeros at sea, the land mask alongside."""
    samples = prepare_samples(planted.cube, PrepareConfig(grid=True))
    assert samples.grid.shape == (30, 2, 6, 7)
    assert (samples.grid[:, :, ~planted.land] == 0).all()
    np.testing.assert_array_equal(samples.grid_mask, planted.land)


def test_mean_fill_is_labelled_and_covers_every_cell(planted) -> None:
    """fill='mean' keeps every cell, sea at the variable mean."""
    config = PrepareConfig(fill="mean", scaling="none")
    samples = prepare_samples(planted.cube, config)

    assert samples.fill == "mean"
    assert samples.X.shape == (30, 2 * 6 * 7)
    assert samples.feature_mask.all()

    # Sea features equal the land mean of t2m (float32 of ~285 K).
    maps = samples.to_maps(samples.X)
    t2m_mean = planted.cube["t2m"].values[:, planted.land].mean()
    np.testing.assert_allclose(maps[:, 0][:, ~planted.land], t2m_mean, rtol=1e-6)
    assert prepare_samples(planted.cube).fill == "mask"


def test_to_maps_inverts_the_features(planted) -> None:
    """Features back to maps, unscaled: the cube's values, NaN sea."""
    samples = prepare_samples(planted.cube)
    maps = samples.to_maps(samples.X[3], unscale=True)

    assert maps.shape == (2, 6, 7)
    assert np.isnan(maps[:, ~planted.land]).all()
    # float32 features times a scale of ~900 Pa: errors below 1e-3 Pa.
    np.testing.assert_allclose(
        maps[1, planted.land], planted.cube["sp"].values[3, planted.land], atol=1e-2
    )


def test_diurnal_anomaly_removes_the_hour_of_day_mean(rng) -> None:
    """Every hour of day then averages to zero in every cell."""
    cube = _hourly_cube(rng)
    anomaly = remove_cycle(cube["Tair"], cycle="diurnal")

    # Group means of the anomalies: zero up to float64 round-off.
    by_hour = anomaly.groupby("time.hour").mean("time").values
    np.testing.assert_allclose(by_hour[:, 1:, :], 0.0, atol=1e-12)
    assert np.isnan(anomaly.values[:, 0, 0]).all()
    assert anomaly.dims == ("time", "lat", "lon")
    assert anomaly.attrs["units"] == "K"

    # Through prepare_samples, unscaled: the same values as features.
    samples = prepare_samples(cube, PrepareConfig(anomaly="diurnal", scaling="none"))
    land = samples.mask
    np.testing.assert_allclose(
        samples.X, anomaly.values[:, land].astype(np.float32), atol=1e-6
    )


def test_anomaly_then_daily_mean(rng) -> None:
    """Diurnal anomalies resampled to days: one sample per day."""
    cube = _hourly_cube(rng, days=5)
    config = PrepareConfig(anomaly="diurnal", resample="1D")
    samples = prepare_samples(cube, config)

    assert samples.X.shape == (5, 11)
    assert samples.times[1] == np.datetime64("2017-01-02T00:00", "ns")


def test_monthly_anomaly(planted) -> None:
    """Day-of-year or month anomalies run on daily data."""
    samples = prepare_samples(planted.cube, PrepareConfig(anomaly="month"))
    assert samples.X.shape[0] == 30


def test_diurnal_anomaly_refused_on_daily_data(planted) -> None:
    """A daily cube has no diurnal cycle to remove."""
    with pytest.raises(ClusteringInputError, match="sub-daily"):
        prepare_samples(planted.cube, PrepareConfig(anomaly="diurnal"))


def test_isolated_gaps_on_land_are_filled_and_counted(planted) -> None:
    """A missing land value becomes the mean (0 after the z-score)."""
    cube = planted.cube.copy(deep=True)
    row, col = np.argwhere(planted.land)[0]
    cube["t2m"].values[4, row, col] = np.nan

    samples = prepare_samples(cube, PrepareConfig(grid=True))
    assert samples.n_filled == 1
    assert samples.grid[4, 0, row, col] == 0.0
    assert np.isfinite(samples.X).all()


def test_padding_to_a_power_of_two(planted) -> None:
    """Grid padded at the end of lat and lon, the mask False there."""
    assert padded_size(41, levels=3) == 48
    assert padded_size(48, levels=3) == 48
    assert padded_size(5, levels=0) == 5

    samples = prepare_samples(planted.cube, PrepareConfig(grid=True, pad_levels=2))
    assert samples.grid.shape == (30, 2, 8, 8)
    assert (samples.grid[:, :, 6:, :] == 0).all()
    assert not samples.grid_mask[:, 7:].any()
    np.testing.assert_array_equal(samples.grid_mask[:6, :7], planted.land)

    grid, mask = pad_grid(np.ones((2, 3, 5)), np.ones((3, 5), bool), levels=1)
    assert grid.shape == (2, 4, 6) and mask.sum() == 15


def test_cube_without_time_is_refused(planted) -> None:
    """A single map has nothing to cluster."""
    with pytest.raises(ClusteringInputError, match="time"):
        prepare_samples(planted.cube.isel(time=0))


def test_fewer_steps_than_clusters_is_refused(planted) -> None:
    """Each cluster needs a sample."""
    with pytest.raises(ClusteringInputError, match="30 time steps for 31 clusters"):
        prepare_samples(planted.cube, n_clusters=31)


def test_all_nan_variable_is_refused(planted) -> None:
    """An empty field is named."""
    cube = planted.cube.copy(deep=True)
    cube["sp"].values[:] = np.nan
    with pytest.raises(ClusteringInputError, match="sp is NaN everywhere"):
        prepare_samples(cube)


def test_unknown_variable_and_options_are_refused(planted) -> None:
    """Typos are named with the choices."""
    with pytest.raises(ClusteringInputError, match="tp"):
        prepare_samples(planted.cube, PrepareConfig(variables=("tp",)))
    with pytest.raises(ClusteringConfigError, match="fill"):
        PrepareConfig(fill="zero")  # type: ignore[arg-type]
    with pytest.raises(ClusteringConfigError, match="anomaly"):
        PrepareConfig(anomaly="weekly")  # type: ignore[arg-type]


def test_errors_are_value_errors() -> None:
    """Callers catching ValueError catch ours."""
    assert issubclass(ClusteringInputError, ValueError)
