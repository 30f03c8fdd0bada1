"""Tests of the baseline beds, ``engine.bedtopo.baselines``."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from engine.bedtopo.baselines import (
    BASELINES,
    fit_predict,
    kriging_variogram,
    radar_cells,
)
from engine.bedtopo.errors import ConfigError, FeatureError
from engine.bedtopo.evaluate import comparison_table, evaluate_bed
from engine.bedtopo.features import FeatureConfig, make_features
from engine.bedtopo.targets import pick_beds
from engine.data.twin import make_twin


@pytest.fixture(scope="module")
def tiny_twin():
    """A 32 x 32 twin (4.8 km square); training radar from all lines but 0."""
    twin = make_twin(seed=5, ny=32, nx=32, n_troughs=1, n_ridges=1)
    grid = twin.grid
    easting, northing, bed = pick_beds(twin.radar, grid)
    train = twin.radar["line_id"].to_numpy() != 0
    features = make_features(grid, config=FeatureConfig(include_bedmachine=True))
    return grid, features, easting[train], northing[train], bed[train]


def _plain_grid(ny: int = 30, nx: int = 30) -> xr.Dataset:
    """An empty 150 m grid on EPSG:3413 cell centres."""
    x = -250_000.0 + 150.0 * np.arange(nx)
    y = -2_100_000.0 - 150.0 * np.arange(ny)
    return xr.Dataset(coords={"x": x, "y": y})


@pytest.mark.parametrize("name", BASELINES)
def test_each_baseline_gives_a_finite_grid(tiny_twin, name):
    """Every baseline: an (H, W) bed, finite, of a plausible size."""
    grid, features, easting, northing, bed = tiny_twin

    out = fit_predict(name, grid, features, easting, northing, bed, seed=0)

    assert out.shape == (32, 32)
    assert np.isfinite(out).all()
    truth = grid["bed_true"].values
    # Within the bed's own range widened by 500 m: no method runs away.
    assert truth.min() - 500 < out.min() and out.max() < truth.max() + 500


def test_bedmachine_baseline_is_bedmachine(tiny_twin):
    """No radar used: the grid's BedMachine bed as it is."""
    grid, features, easting, northing, bed = tiny_twin

    out = fit_predict("bedmachine", grid, features, easting[:0], northing[:0], bed[:0])

    np.testing.assert_array_equal(out, grid["bed_bedmachine"].values)


def test_linear_interpolation_is_exact_at_training_points():
    """One pick per cell centre: the interpolation returns it there."""
    grid = _plain_grid()
    rng = np.random.default_rng(3)
    rows = rng.choice(30, 60)
    cols = rng.choice(30, 60)
    cells = np.unique(np.column_stack([rows, cols]), axis=0)
    px = grid["x"].values[cells[:, 1]]
    py = grid["y"].values[cells[:, 0]]
    values = rng.normal(-300.0, 80.0, len(cells))

    out = fit_predict("linear", grid, None, px, py, values)

    # Barycentric weights at a vertex: 1 and 0 up to round-off.
    np.testing.assert_allclose(out[cells[:, 0], cells[:, 1]], values, atol=1e-6)


def test_kriging_recovers_a_smooth_field_better_than_the_mean():
    """150 scattered cells of a smooth field: kriging beats their mean."""
    grid = _plain_grid()
    xx, yy = np.meshgrid(grid["x"].values, grid["y"].values)
    field = 200.0 * np.sin((xx - xx.min()) / 1500.0) * np.cos((yy - yy.min()) / 2000.0)
    rng = np.random.default_rng(0)
    flat = rng.choice(field.size, 150, replace=False)

    out = fit_predict(
        "kriging", grid, None, xx.ravel()[flat], yy.ravel()[flat], field.ravel()[flat]
    )

    rmse_kriging = np.sqrt(np.mean((out - field) ** 2))
    rmse_mean = np.sqrt(np.mean((field.ravel()[flat].mean() - field) ** 2))
    # A smooth field sampled every few cells: kriging is several times
    # better than the mean; a factor of 3 leaves room for the fit.
    assert rmse_kriging < rmse_mean / 3


def test_kriging_variogram_reports_the_full_sill():
    """Full sill = partial sill + nugget, whatever PyKrige keeps."""
    from pykrige.ok import OrdinaryKriging

    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, 5000, 80), rng.uniform(0, 5000, 80)
    z = np.sin(x / 800.0) * 50.0 + rng.normal(0, 5, 80)
    kriging = OrdinaryKriging(x, y, z, variogram_model="spherical")

    variogram = kriging_variogram(kriging)

    psill, reach, nugget = kriging.variogram_model_parameters
    assert variogram.partial_sill == psill and variogram.nugget == nugget
    assert variogram.sill == pytest.approx(psill + nugget)
    assert variogram.range == reach and variogram.n_points == 80


def test_radar_cells_average_picks_per_cell():
    """Two picks in one cell: one cell at their mean position and bed."""
    grid = _plain_grid(4, 4)
    x0, y0 = grid["x"].values[1], grid["y"].values[2]
    px = np.array([x0 - 30.0, x0 + 50.0, x0 + 400.0])
    py = np.array([y0, y0 + 20.0, y0 + 10.0])
    bed = np.array([-100.0, -200.0, np.nan])

    cells = radar_cells(grid, px, py, bed)

    # Means of two float64 values: exact here.
    np.testing.assert_array_equal(cells.row, [2])
    np.testing.assert_array_equal(cells.col, [1])
    np.testing.assert_array_equal(cells.bed, [-150.0])
    np.testing.assert_allclose(cells.x, [x0 + 10.0])
    np.testing.assert_allclose(cells.y, [y0 + 10.0])


def test_bad_names_options_and_data_raise(tiny_twin):
    """Unknown baseline or option, or too little radar: named errors."""
    grid, features, easting, northing, bed = tiny_twin

    with pytest.raises(ConfigError, match="unknown baseline"):
        fit_predict("splines", grid, features, easting, northing, bed)
    with pytest.raises(ConfigError, match="do not apply"):
        fit_predict(
            "linear", grid, features, easting, northing, bed, options={"nlags": 3}
        )
    with pytest.raises(FeatureError, match="at least"):
        fit_predict("kriging", grid, features, easting[:1], northing[:1], bed[:1])


def test_baselines_scored_on_one_split(tiny_twin):
    """Held-out line 0: one table, BedMachine perfect against itself."""
    grid, features, easting, northing, bed = tiny_twin
    twin = make_twin(seed=5, ny=32, nx=32, n_troughs=1, n_ridges=1)
    test_x, test_y, test_bed = pick_beds(twin.radar, grid)
    held_out = twin.radar["line_id"].to_numpy() == 0

    results = {
        name: evaluate_bed(
            fit_predict(name, grid, features, easting, northing, bed),
            grid,
            test_x=test_x[held_out],
            test_y=test_y[held_out],
            test_bed=test_bed[held_out],
            pick_x=easting,
            pick_y=northing,
        )
        for name in ("bedmachine", "gbr_residual")
    }
    table = comparison_table(results)

    assert table.loc["bedmachine", "grid.rmse"] == 0
    assert table.loc["bedmachine", "points.n"] == held_out.sum()
    assert {"twin.rmse_true", "twin.rmse_true_away"} <= set(table.columns)
