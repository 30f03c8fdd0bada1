"""Tests of the feature channels and their scaler, ``engine.bedtopo.features``."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import xarray as xr

from engine.bedtopo.errors import (
    ConfigError,
    FeatureError,
    FilledFeatureWarning,
    MissingFeatureWarning,
)
from engine.bedtopo.features import (
    BEDMACHINE_FIELDS,
    SURFACE_FIELDS,
    FeatureConfig,
    FeatureScaler,
    make_features,
    raw_features,
    trend_names,
)

#: Cell size of the test grids, m.
SPACING = 150.0


def _grid(rng: np.random.Generator, *, ny: int = 12, nx: int = 16) -> xr.Dataset:
    """A small grid in the conventions: y decreasing, random smooth-ish fields."""
    x = -290_000.0 + SPACING * (np.arange(nx) + 0.5)
    y = -1_830_000.0 - SPACING * (np.arange(ny) + 0.5)
    names = SURFACE_FIELDS + BEDMACHINE_FIELDS
    data = {
        name: (("y", "x"), rng.normal(10.0 * k, 1.0 + k, (ny, nx)).astype("float32"))
        for k, name in enumerate(names)
    }
    return xr.Dataset(data, coords={"x": x, "y": y})


@pytest.mark.parametrize(
    ("degree", "terms"),
    [
        (1, ["trend_x", "trend_y"]),
        (2, ["trend_x", "trend_y", "trend_x2", "trend_xy", "trend_y2"]),
        (
            3,
            ["trend_x", "trend_y", "trend_x2", "trend_xy", "trend_y2"]
            + ["trend_x3", "trend_x2y", "trend_xy2", "trend_y3"],
        ),
    ],
)
def test_channel_names_per_degree(rng, degree, terms):
    """Fields, their two gradients each, then every trend term once."""
    features = make_features(_grid(rng), config=FeatureConfig(trend_degree=degree))

    surface = [
        name
        for field in SURFACE_FIELDS
        for name in (field, f"{field}_gradient_x", f"{field}_gradient_y")
    ]
    assert trend_names(degree) == terms
    assert len(terms) == (degree + 1) * (degree + 2) // 2 - 1
    assert list(features.channels) == surface + terms
    assert features.values.shape == (15 + len(terms), 12, 16)
    assert features.values.dtype == np.float32


def test_default_channel_counts(rng):
    """20 channels by default, 22 with BedMachine's bed and error."""
    grid = _grid(rng)

    plain = make_features(grid)
    with_bed = make_features(grid, config=FeatureConfig(include_bedmachine=True))

    assert len(plain.channels) == 20
    assert with_bed.channels[-2:] == BEDMACHINE_FIELDS
    assert len(with_bed.channels) == 22


def test_trend_terms_span_unit_square(rng):
    """x is -1 at the west edge and +1 at the east, y -1 south and +1 north."""
    features = make_features(_grid(rng), config=FeatureConfig(trend_degree=1))
    raw, names, extent = raw_features(_grid(rng), config=FeatureConfig(trend_degree=1))

    trend_x = raw[names.index("trend_x")]
    trend_y = raw[names.index("trend_y")]
    # Exact affine maps of the coordinates: float64 round-off only.
    np.testing.assert_allclose(trend_x[0, [0, -1]], [-1.0, 1.0], atol=1e-12)
    np.testing.assert_allclose(trend_y[[0, -1], 0], [1.0, -1.0], atol=1e-12)
    assert features.scaler.trend_extent == extent


def test_z_scored_mean_zero_std_one(rng):
    """Every channel has mean 0 and population std 1 after scaling."""
    features = make_features(_grid(rng), config=FeatureConfig(include_bedmachine=True))

    flat = features.values.reshape(len(features.channels), -1).astype("float64")
    # float32 storage of values O(1): errors near 1e-7, so 1e-5 is ample.
    np.testing.assert_allclose(flat.mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(flat.std(axis=1), 1.0, atol=1e-5)


def test_scaler_json_round_trip(rng):
    """to_dict -> JSON text -> from_dict gives an equal scaler and equal values."""
    grid = _grid(rng)
    features = make_features(grid)

    text = json.dumps(features.scaler.to_dict())
    scaler = FeatureScaler.from_dict(json.loads(text))
    again = make_features(grid, scaler=scaler)

    assert scaler == features.scaler
    # Same arithmetic on the same inputs: bit-identical.
    np.testing.assert_array_equal(again.values, features.values)


def test_scaler_rejects_other_version(rng):
    """A scaler dict of another version is refused with the way out."""
    data = make_features(_grid(rng)).scaler.to_dict()
    data["version"] = 99

    with pytest.raises(ConfigError, match="refit"):
        FeatureScaler.from_dict(data)


def test_window_uses_training_scaling(rng):
    """A window with the training scaler gets the training trend and statistics."""
    grid = _grid(rng)
    full = make_features(grid)

    window = make_features(grid.isel(y=slice(2, 8), x=slice(3, 11)), scaler=full.scaler)

    # Channels without gradients are pointwise: same numbers in the window.
    for name in ("surface_elevation", "trend_xy", "trend_y2"):
        k = full.channels.index(name)
        np.testing.assert_array_equal(window.values[k], full.values[k, 2:8, 3:11])


def test_missing_dhdt_dropped_with_warning(rng):
    """No dh/dt: its channel and gradients go, with a MissingFeatureWarning."""
    grid = _grid(rng).drop_vars("surface_elevation_change")

    with pytest.warns(MissingFeatureWarning, match="surface_elevation_change"):
        features = make_features(grid)

    assert len(features.channels) == 17
    assert not any(c.startswith("surface_elevation_change") for c in features.channels)


def test_all_nan_field_dropped_with_warning(rng):
    """A field NaN everywhere is dropped, not filled."""
    grid = _grid(rng)
    grid["surface_mass_balance"][:] = np.nan

    with pytest.warns(MissingFeatureWarning, match="NaN in every cell"):
        features = make_features(grid)

    assert "surface_mass_balance" not in features.channels


def test_scattered_nan_filled_with_mean(rng):
    """Scattered NaN become 0 (the mean) with a warning and a filled mask."""
    grid = _grid(rng)
    grid["surface_elevation_change"][3, 4] = np.nan

    with pytest.warns(FilledFeatureWarning, match="surface_elevation_change"):
        features = make_features(grid)

    k = features.channels.index("surface_elevation_change")
    assert features.values[k, 3, 4] == 0.0
    assert np.isfinite(features.values).all()
    # The gap also blanks the central-difference gradient of its neighbours.
    assert features.filled[3, 4] and features.filled[2, 4] and features.filled[3, 5]
    assert features.filled.sum() == 5


def test_scaler_channel_missing_from_grid_raises(rng):
    """Prediction on a grid that lacks a trained channel fails clearly."""
    scaler = make_features(_grid(rng)).scaler
    grid = _grid(rng).drop_vars("surface_velocity_x")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingFeatureWarning)
        with pytest.raises(FeatureError, match="surface_velocity_x"):
            make_features(grid, scaler=scaler)


def test_gradients_of_a_plane_equal_its_slope(rng):
    """f = a x + b y (northing) gives gradient_x = a and gradient_y = b."""
    grid = _grid(rng)
    slope_east, slope_north = 0.02, -0.035
    xx, yy = np.meshgrid(grid["x"].values, grid["y"].values)
    plane = slope_east * (xx - xx.mean()) + slope_north * (yy - yy.mean())
    grid["surface_elevation"] = (("y", "x"), plane)

    raw, names, _ = raw_features(grid)

    # Central and one-sided differences are exact on a plane; float64
    # coordinates near 1e6 m leave round-off near 1e-10 per metre.
    np.testing.assert_allclose(
        raw[names.index("surface_elevation_gradient_x")], slope_east, atol=1e-9
    )
    np.testing.assert_allclose(
        raw[names.index("surface_elevation_gradient_y")], slope_north, atol=1e-9
    )


def test_config_rejects_bad_degree():
    """A trend degree out of range is refused."""
    with pytest.raises(ConfigError, match="trend_degree"):
        FeatureConfig(trend_degree=7)
