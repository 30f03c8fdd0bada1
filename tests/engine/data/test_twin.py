"""Tests of the seeded synthetic twin generator, ``engine.data.twin``."""

from __future__ import annotations

import dataclasses
import json
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import Transformer
from scipy import ndimage
from scipy.spatial import cKDTree

from engine.data.errors import DataError
from engine.data.twin import BedFeature, Twin, TwinConfig, TwinConfigError, make_twin

#: A small twin: 48 x 64 cells of 250 m (12 km x 16 km), quick to make.
SMALL = {"ny": 48, "nx": 64, "spacing": 250.0}

GRID_VARIABLES = {
    "surface_elevation": "m",
    "surface_velocity_x": "m a-1",
    "surface_velocity_y": "m a-1",
    "surface_mass_balance": "m a-1",
    "surface_elevation_change": "m a-1",
    "mask": "1",
    "bed_bedmachine": "m",
    "bed_bedmachine_error": "m",
    "ice_thickness": "m",
    "bed_true": "m",
}

RADAR_COLUMNS = {
    "x": "float64",
    "y": "float64",
    "ice_thickness": "float64",
    "bed_elevation": "float64",
    "source": "int64",
    "line_id": "int64",
}


@pytest.fixture(scope="module")
def twin() -> Twin:
    """One small seeded twin shared by the read-only tests."""
    return make_twin(seed=11, **SMALL)


def _speed(grid: xr.Dataset) -> np.ndarray:
    """Surface speed (m a-1) of a twin grid."""
    return np.hypot(
        grid["surface_velocity_x"].values, grid["surface_velocity_y"].values
    )


def _true_thickness_at_picks(twin: Twin) -> np.ndarray:
    """Surface minus true bed, bilinear at the radar picks (m)."""
    thickness = twin.true_thickness
    picks_x = xr.DataArray(twin.radar["x"].to_numpy(), dims="pick")
    picks_y = xr.DataArray(twin.radar["y"].to_numpy(), dims="pick")
    return thickness.interp(x=picks_x, y=picks_y, method="linear").values


def _near_feature(twin: Twin, kind: str) -> np.ndarray:
    """Cells within half a width of the centre line of a trough or ridge."""
    xx, yy = np.meshgrid(twin.grid["x"].values, twin.grid["y"].values)
    near = np.zeros(xx.shape, dtype=bool)
    for feature in twin.features:
        if feature.kind == kind:
            near |= np.abs(feature.distance(xx, yy)) < 0.5 * feature.width
    return near


# --- schema -----------------------------------------------------------------


def test_grid_dims_coords_and_crs(twin: Twin) -> None:
    grid = twin.grid
    config = twin.config

    assert grid["bed_true"].dims == ("y", "x")
    assert grid.sizes == {"y": SMALL["ny"], "x": SMALL["nx"]}
    assert np.all(np.diff(grid["x"].values) > 0)
    assert np.all(np.diff(grid["y"].values) < 0)

    # Cell centres half a cell in from the north-west corner; exact sums of
    # binary-exact multiples of 250 m, so compared with a float64 tolerance
    assert grid["x"].values[0] == pytest.approx(config.origin_x + 125.0, abs=1e-6)
    assert grid["y"].values[0] == pytest.approx(config.origin_y - 125.0, abs=1e-6)
    assert np.allclose(np.diff(grid["x"].values), 250.0)

    assert grid.rio.crs.to_epsg() == 3413
    transform = grid.rio.transform()
    corner = (transform.c, transform.f)
    assert corner == pytest.approx((config.origin_x, config.origin_y))
    assert grid.attrs["grid_spacing"] == 250.0
    assert grid.attrs["origin"] == "twin(seed=11)"
    assert json.loads(grid.attrs["twin_config"]) == dataclasses.asdict(config)


def test_grid_variables_units_and_dtypes(twin: Twin) -> None:
    grid = twin.grid

    assert set(grid.data_vars) == set(GRID_VARIABLES)
    for name, units in GRID_VARIABLES.items():
        assert grid[name].attrs["units"] == units, name
        assert grid[name].attrs["long_name"], name
        expected = np.int8 if name == "mask" else np.float32
        assert grid[name].dtype == expected, name
        if name != "mask":
            assert np.isfinite(grid[name].values).all(), name
    assert set(np.unique(grid["mask"].values)) == {2}


def test_radar_schema(twin: Twin) -> None:
    radar = twin.radar
    grid = twin.grid

    assert {c: str(t) for c, t in radar.dtypes.items()} == RADAR_COLUMNS
    assert radar.attrs == {"crs": "EPSG:3413", "origin": "twin(seed=11)"}
    assert radar["bed_elevation"].isna().all()
    assert (radar["source"] == radar["line_id"]).all()
    assert set(radar["line_id"]) == set(range(twin.config.n_lines))

    # Every pick lies within the extent of the cell centres
    assert radar["x"].between(grid["x"].min().item(), grid["x"].max().item()).all()
    assert radar["y"].between(grid["y"].min().item(), grid["y"].max().item()).all()


def test_radar_along_track_spacing(twin: Twin) -> None:
    step = twin.config.along_track_step
    for _, line in twin.radar.groupby("line_id"):
        hops = np.hypot(np.diff(line["x"].to_numpy()), np.diff(line["y"].to_numpy()))

        # Picks are an arc length of one step apart, so the straight hop is
        # at most one step and, the lines bending gently, within 1 % of it;
        # a line leaving and re-entering the grid is the one allowed gap
        regular = hops[hops < 1.5 * step]
        assert regular.size >= hops.size - 1
        assert np.all(regular <= step * (1 + 1e-9))
        assert np.all(regular >= 0.99 * step)


def test_default_twin_lies_near_upernavik_isstrom() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        twin = make_twin()

    assert twin.grid.sizes == {"y": 96, "x": 128}
    to_lonlat = Transformer.from_crs("EPSG:3413", "EPSG:4326", always_xy=True)
    lon, lat = to_lonlat.transform(
        twin.grid["x"].mean().item(), twin.grid["y"].mean().item()
    )

    # Upernavik Isstrom's front is near 72.9 N, 54.4 W; the grid lies inland
    # of it, so a box of about a degree around that point
    assert 72.5 < lat < 73.5
    assert -55.0 < lon < -53.0


# --- determinism ------------------------------------------------------------


def test_same_seed_same_twin(twin: Twin) -> None:
    again = make_twin(seed=11, **SMALL)

    xr.testing.assert_identical(again.grid, twin.grid)
    pd.testing.assert_frame_equal(again.radar, twin.radar)
    assert again.radar.attrs == twin.radar.attrs
    assert again.features == twin.features


def test_other_seed_other_twin(twin: Twin) -> None:
    other = make_twin(seed=12, **SMALL)

    assert not np.array_equal(other.grid["bed_true"], twin.grid["bed_true"])
    assert not np.array_equal(other.grid["bed_bedmachine"], twin.grid["bed_bedmachine"])
    assert len(other.radar) != len(twin.radar) or not np.array_equal(
        other.radar["x"], twin.radar["x"]
    )


def test_radar_noise_does_not_redraw_the_bed(twin: Twin) -> None:
    quieter = make_twin(seed=11, radar_noise_std=1.0, **SMALL)

    xr.testing.assert_identical(quieter.grid["bed_true"], twin.grid["bed_true"])
    np.testing.assert_array_equal(quieter.radar["x"], twin.radar["x"])
    assert not np.array_equal(
        quieter.radar["ice_thickness"], twin.radar["ice_thickness"]
    )


# --- geometry ---------------------------------------------------------------


def test_thickness_at_least_the_minimum(twin: Twin) -> None:
    # Surface and bed are rounded to float32 apart, so allow 1 mm
    assert twin.true_thickness.min().item() >= twin.config.min_thickness - 1e-3


def test_thin_ice_lifted_with_a_warning() -> None:
    # A low plastic profile puts the ridges above the surface
    with pytest.warns(UserWarning, match="lifted"):
        twin = make_twin(seed=2, yield_stress=20_000.0, min_thickness=25.0, **SMALL)

    # Surface and bed are rounded to float32 apart, so allow 1 mm
    assert twin.true_thickness.min().item() >= 25.0 - 1e-3
    assert (twin.grid["mask"] == 2).all()


def test_ice_free_land_option() -> None:
    twin = make_twin(
        seed=2, yield_stress=20_000.0, min_thickness=25.0, ice_free_land=True, **SMALL
    )
    grid = twin.grid
    land = grid["mask"].values == 1
    ice = grid["mask"].values == 2

    assert land.any() and ice.any()
    assert set(np.unique(grid["mask"].values)) == {1, 2}

    # On land the surface is the bed and nothing moves; on ice the thickness
    # keeps its minimum (1 mm for float32 rounding)
    np.testing.assert_array_equal(
        grid["surface_elevation"].values[land], grid["bed_true"].values[land]
    )
    assert np.all(_speed(grid)[land] == 0)
    assert np.all(grid["ice_thickness"].values[land] == 0)
    assert twin.true_thickness.values[ice].min() >= 25.0 - 1e-3

    # No pick is on a land cell (nearest cell)
    rows = np.rint((grid["y"].values[0] - twin.radar["y"]) / 250.0).astype(int)
    cols = np.rint((twin.radar["x"] - grid["x"].values[0]) / 250.0).astype(int)
    assert np.all(grid["mask"].values[rows, cols] == 2)


def test_features_alternate_and_fit_the_grid(twin: Twin) -> None:
    kinds = [feature.kind for feature in twin.features]
    assert kinds == ["trough", "ridge", "trough", "ridge", "trough"]
    assert all(isinstance(feature, BedFeature) for feature in twin.features)

    # Centre lines inside the grid, south to north
    y = twin.grid["y"].values
    centres = [feature.y_centre for feature in twin.features]
    assert centres == sorted(centres)
    assert y.min() < centres[0] and centres[-1] < y.max()


def test_troughs_are_deep(twin: Twin) -> None:
    bed = twin.grid["bed_true"].values

    # Trough floors lie hundreds of metres below the ridge crests
    crests = bed[_near_feature(twin, "ridge")].mean()
    floors = bed[_near_feature(twin, "trough")].mean()
    depth = crests - floors
    assert depth > 300.0


# --- radar ------------------------------------------------------------------


def test_radar_thickness_matches_truth_within_the_noise(twin: Twin) -> None:
    residual = twin.radar["ice_thickness"].to_numpy() - _true_thickness_at_picks(twin)
    sigma = twin.config.radar_noise_std
    count = residual.size

    assert count > 200
    rms = np.sqrt(np.mean(residual**2))

    # With n picks the RMS of N(0, sigma) noise has a standard error of about
    # sigma / sqrt(2 n), under 5 % here; 3 sigma is the coarse bound asked,
    # and 20 % is over four standard errors either way
    assert rms < 3 * sigma
    assert abs(rms - sigma) < 0.2 * sigma

    # The mean has a standard error of sigma / sqrt(n); allow 4 of them
    assert abs(residual.mean()) < 4 * sigma / np.sqrt(count)


def test_noiseless_radar_is_the_grid_truth() -> None:
    twin = make_twin(seed=5, radar_noise_std=0.0, **SMALL)
    residual = twin.radar["ice_thickness"].to_numpy() - _true_thickness_at_picks(twin)

    # Same bilinear interpolation of the same float32 grid: only rounding
    assert np.abs(residual).max() < 1e-3


# --- BedMachine-like prior --------------------------------------------------


def test_prior_is_smoother_than_the_truth(twin: Twin) -> None:
    true = twin.grid["bed_true"].values.astype(float)
    prior = twin.grid["bed_bedmachine"].values.astype(float)

    # Roughness as the variance of the discrete Laplacian; smoothing over
    # 600 m (2.4 cells) removes well over half of it
    assert ndimage.laplace(prior).var() < 0.5 * ndimage.laplace(true).var()

    # And the gradients are gentler on the whole
    assert np.var(np.gradient(prior)) < np.var(np.gradient(true))


@pytest.mark.parametrize("bias", [0.0, 35.0])
def test_prior_has_the_configured_mean_bias(bias: float) -> None:
    twin = make_twin(seed=3, bedmachine_bias=bias, **SMALL)
    difference = twin.grid["bed_bedmachine"] - twin.grid["bed_true"]

    # The bias field has exactly the configured mean; the Gaussian smoothing
    # (reflecting edges) and the cap at the surface shift the mean by far
    # less than 2 m
    assert difference.mean().item() == pytest.approx(bias, abs=2.0)

    # The prior never lies above the surface
    assert (twin.grid["ice_thickness"] >= 0).all()


def test_prior_thickness_is_surface_minus_prior_bed(twin: Twin) -> None:
    grid = twin.grid
    derived = grid["surface_elevation"] - grid["bed_bedmachine"]

    # float32 subtraction rounded once more: a few mm at 1000 m
    np.testing.assert_allclose(grid["ice_thickness"], derived, atol=0.01)


def test_error_grows_away_from_the_lines(twin: Twin) -> None:
    grid = twin.grid
    config = twin.config
    error = grid["bed_bedmachine_error"].values
    xx, yy = np.meshgrid(grid["x"].values, grid["y"].values)
    tree = cKDTree(twin.radar[["x", "y"]].to_numpy())
    distance, _ = tree.query(np.column_stack([xx.ravel(), yy.ravel()]))
    distance = distance.reshape(error.shape)

    near = distance < config.spacing
    far = distance > config.error_length
    assert near.any() and far.any()
    assert error[far].mean() > 3 * error[near].mean()

    # Within one cell of a pick the error is at most error_near plus the
    # growth over one cell, (far - near) * spacing / error_length
    bound = config.error_near + (config.error_far - config.error_near) * 250.0 / 2000.0
    assert error[near].max() <= bound

    # float32 rounding of values of order 100 m: allow 1e-3 m
    assert error.min() >= config.error_near - 1e-3
    assert error.max() <= config.error_far + 1e-3


# --- velocity, SMB and dh/dt ------------------------------------------------


@pytest.mark.parametrize("seed", [0, 11])
def test_ice_is_faster_in_troughs_than_on_ridges(seed: int) -> None:
    twin = make_twin(seed=seed, **SMALL)
    speed = _speed(twin.grid)

    # Thick ice on a wet bed against thin ice on a dry one: the gap is large,
    # a factor of 3 leaves a wide margin
    assert speed[_near_feature(twin, "trough")].mean() > 3 * speed[
        _near_feature(twin, "ridge")
    ].mean()


def test_ice_flows_down_the_surface_slope(twin: Twin) -> None:
    grid = twin.grid
    dsdy, dsdx = np.gradient(
        grid["surface_elevation"].values.astype(float),
        grid["y"].values,
        grid["x"].values,
    )
    vx = grid["surface_velocity_x"].values
    vy = grid["surface_velocity_y"].values

    # Westward to the margin, and against the surface gradient nearly
    # everywhere (the smoothing may turn a few cells near the divides)
    assert vx.mean() < 0
    assert np.mean(vx * dsdx + vy * dsdy < 0) > 0.95


def test_smb_and_dhdt_are_plausible(twin: Twin) -> None:
    grid = twin.grid
    surface = grid["surface_elevation"].values
    smb = grid["surface_mass_balance"].values
    dhdt = grid["surface_elevation_change"].values
    speed = _speed(grid)

    # Ablation low down, accumulation high up, and within a few m a-1
    low = surface < np.percentile(surface, 10)
    high = surface > np.percentile(surface, 90)
    assert smb[low].mean() < 0 < smb[high].mean()
    assert np.abs(smb).max() < 5.0
    assert smb.max() <= twin.config.smb_max + 0.5  # cap plus the noise

    # Thinning throughout, strongest where the ice is fast
    assert dhdt.max() < 0
    assert np.corrcoef(speed.ravel(), dhdt.ravel())[0, 1] < -0.3


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    seed=st.integers(min_value=0, max_value=2**32 - 1),
    ny=st.integers(min_value=40, max_value=56),
    nx=st.integers(min_value=16, max_value=60),
)
def test_any_seed_gives_a_sound_twin(seed: int, ny: int, nx: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        twin = make_twin(seed=seed, ny=ny, nx=nx, spacing=250.0)

    assert twin.grid.sizes == {"y": ny, "x": nx}
    for name in GRID_VARIABLES:
        assert np.isfinite(twin.grid[name].values).all(), name

    # 1 mm for the float32 rounding of surface and bed
    assert twin.true_thickness.min().item() >= twin.config.min_thickness - 1e-3
    assert len(twin.radar) > 0


# --- settings ---------------------------------------------------------------


def test_config_is_frozen_and_keyword_only() -> None:
    config = TwinConfig(seed=4)

    with pytest.raises(dataclasses.FrozenInstanceError):
        config.seed = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        TwinConfig(4)  # type: ignore[misc]


def test_overrides_apply_on_top_of_a_config() -> None:
    twin = make_twin(TwinConfig(seed=3, **SMALL), n_lines=2)

    assert twin.config.seed == 3
    assert twin.config.n_lines == 2
    assert twin.config.spacing == 250.0
    assert set(twin.radar["line_id"]) == {0, 1}


@pytest.mark.parametrize(
    ("settings_", "message"),
    [
        ({"spacing": -150.0}, "spacing must be a positive"),
        ({"spacing": 0.0}, "spacing must be a positive"),
        ({"ny": 8}, "too small"),
        ({"seed": -1}, "seed must be 0 or more"),
        ({"ny": 48.0}, "whole number"),
        ({"n_troughs": True}, "whole number"),
        ({"spacing": float("nan")}, "finite"),
        ({"trough_depth": "deep"}, "must be a number"),
        ({"ice_free_land": 1}, "True or False"),
        ({"n_troughs": 8}, "too small for 8 troughs"),
        ({"trough_width": 200.0}, "cannot resolve"),
        ({"radar_noise_std": -1.0}, "radar_noise_std must be 0 or more"),
        ({"error_far": 5.0}, "error_far"),
        ({"surface_bed_coupling": 1.5}, "between 0 and 1"),
        ({"n_lines": 0}, "n_lines must be 1 or more"),
        ({"along_track_step": 0.0}, "along_track_step"),
        ({"along_track_step": 5000.0}, "along_track_step"),
        ({"line_wiggle": 5000.0}, "line_wiggle"),
        ({"yield_stress": 0.0}, "yield_stress must be positive"),
    ],
)
def test_bad_settings_raise_clear_errors(settings_: dict, message: str) -> None:
    with pytest.raises(TwinConfigError, match=message) as caught:
        make_twin(**{**SMALL, **settings_})

    assert isinstance(caught.value, DataError)


def test_bad_settings_fail_at_construction() -> None:
    with pytest.raises(TwinConfigError, match="spacing"):
        TwinConfig(spacing=-1.0)


def test_unknown_setting_suggests_the_name() -> None:
    with pytest.raises(TwinConfigError, match="did you mean 'spacing'"):
        make_twin(spacnig=100.0)


def test_config_must_be_a_twin_config() -> None:
    with pytest.raises(TwinConfigError, match="TwinConfig"):
        make_twin({"seed": 1})  # type: ignore[arg-type]
