"""Tests of the planted-regime cubes, ``engine.clustering.synthetic``."""

from __future__ import annotations

import numpy as np
import pytest

from engine.clustering.errors import ClusteringConfigError
from engine.clustering.synthetic import PlantedConfig, make_planted, run_lengths

#: A small planted set, quick to make.
SMALL = PlantedConfig(seed=5, n_time=300, n_lat=10, n_lon=12, n_variables=2)


def test_same_seed_same_cube_other_seed_other_cube() -> None:
    """The seed alone fixes every array; another seed changes them."""
    first = make_planted(SMALL)
    again = make_planted(SMALL)
    other = make_planted(SMALL, seed=6)

    # Identical, NaN included: same draws from the same streams.
    assert first.cube.identical(again.cube)
    np.testing.assert_array_equal(first.regime, again.regime)

    assert not np.array_equal(first.regime, other.regime)


def test_noise_ratio_does_not_redraw_patterns_or_regimes() -> None:
    """Each step has its own random stream."""
    quiet = make_planted(SMALL, noise_ratio=0.0)
    loud = make_planted(SMALL, noise_ratio=2.0)
    np.testing.assert_array_equal(quiet.regime, loud.regime)
    np.testing.assert_array_equal(quiet.patterns, loud.patterns)


def test_cube_follows_the_climate_convention() -> None:
    """Dims, increasing lat/lon, units, NaN sea and the regime coordinate."""
    planted = make_planted(SMALL)
    cube = planted.cube

    # Dims, coordinates and attributes of a climate cube.
    assert list(cube.data_vars) == ["t2m", "sp"]
    for name in cube.data_vars:
        assert cube[name].dims == ("time", "lat", "lon")
        assert cube[name].attrs["units"]
    assert np.all(np.diff(cube["lat"].values) > 0)
    assert np.all(np.diff(cube["lon"].values) > 0)
    assert cube["time"].dtype == np.dtype("datetime64[ns]")
    np.testing.assert_array_equal(cube["regime"].values, planted.regime)

    # Sea is NaN at every step, land finite at every step.
    values = cube["t2m"].values
    assert np.isnan(values[:, ~planted.land]).all()
    assert np.isfinite(values[:, planted.land]).all()


def test_land_mask_has_the_asked_fraction_and_some_sea() -> None:
    """A blob coast: both land and sea, in about the asked shares."""
    planted = make_planted(SMALL, land_fraction=0.6)
    share = planted.land.mean()

    # Quantile threshold on 120 cells: exact up to one cell (1/120).
    assert share == pytest.approx(0.6, abs=1.0 / 120 + 1e-9)
    assert (~planted.land).any()
    assert make_planted(SMALL, land_fraction=1.0).land.all()


def test_regimes_persist() -> None:
    """Runs last about 1 / (1 - p) steps, so far longer than one step."""
    p = 0.8
    regime = make_planted(SMALL, stay_probability=p, n_regimes=4).regime
    expected = 1.0 / (1.0 - p)

    # About 60 runs of geometric length with mean 5 (sd about 4.5): the
    # mean has a standard error near 0.6, so 0.7x..1.3x is over 2 sigma.
    assert 0.7 * expected < run_lengths(regime).mean() < 1.3 * expected
    assert set(np.unique(regime)) == {0, 1, 2, 3}


def test_patterns_are_standardised_over_land() -> None:
    """Zero mean and unit standard deviation over land, per pattern."""
    planted = make_planted(SMALL)
    land_values = planted.patterns[:, :, planted.land]

    # Float64 round-off on 70 land cells only.
    np.testing.assert_allclose(land_values.mean(axis=-1), 0.0, atol=1e-12)
    np.testing.assert_allclose(land_values.std(axis=-1), 1.0, rtol=1e-12)


def test_run_lengths_of_a_small_sequence() -> None:
    """Hand-counted runs."""
    assert run_lengths(np.array([1, 1, 1, 0, 2, 2])).tolist() == [3, 1, 2]
    assert run_lengths(np.array([], dtype=int)).tolist() == []


@pytest.mark.parametrize(
    "overrides",
    [
        {"stay_probability": 1.0},
        {"n_variables": 99},
        {"land_fraction": 0.0},
        {"noise_ratio": -1.0},
        {"west": 179.0},
    ],
)
def test_bad_settings_are_refused(overrides: dict[str, object]) -> None:
    """Each out-of-range setting raises a config error naming it."""
    with pytest.raises(ClusteringConfigError, match="PlantedConfig"):
        make_planted(SMALL, **overrides)


def test_unknown_override_is_refused() -> None:
    """A misspelt field is named, not silently ignored."""
    with pytest.raises(ClusteringConfigError, match="noise_ration"):
        make_planted(noise_ration=1.0)
