"""Tests of the scores, ``engine.bedtopo.evaluate``, on hand-made cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr

from engine.bedtopo.errors import ConfigError
from engine.bedtopo.evaluate import (
    block_average,
    comparison_table,
    interval_coverage,
    psnr,
    sample_at,
    score_grid,
    score_points,
    score_twin,
    ssim,
    terrain_ruggedness,
)

#: Cell centres of a 6 x 8 grid of 150 m cells, EPSG:3413 metres.
X = -200_000.0 + 150.0 * np.arange(8)
Y = -2_000_000.0 - 150.0 * np.arange(6)


def _grid(values: np.ndarray) -> xr.DataArray:
    """A DataArray on the 6 x 8 grid."""
    return xr.DataArray(values, dims=("y", "x"), coords={"x": X, "y": Y})


def _bumpy(seed: int = 0, shape: tuple[int, int] = (40, 50)) -> np.ndarray:
    """A smooth random surface of a few hundred metres of relief."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    surface = 300.0 * np.sin(rows / 6.0) * np.cos(cols / 9.0) - 400.0
    return surface + 20.0 * rng.standard_normal(shape)


def test_score_points_exact():
    """Errors (0, 0, 0, -2): RMSE 1, MAE 0.5, bias -0.5, R2 1 - 4/14."""
    pred = np.array([1.0, 2.0, 3.0, 4.0, np.nan])
    truth = np.array([1.0, 2.0, 3.0, 6.0, 7.0])

    scores = score_points(pred, truth)

    # Sums of a few small integers: exact in float64 but for the division.
    assert scores["n"] == 4
    assert scores["rmse"] == pytest.approx(1.0, abs=1e-15)
    assert scores["mae"] == pytest.approx(0.5, abs=1e-15)
    assert scores["bias"] == pytest.approx(-0.5, abs=1e-15)
    assert scores["r2"] == pytest.approx(1 - 4 / 14, abs=1e-15)


def test_interval_coverage_counts_bounds_as_inside():
    """Three of four inside, one on its upper bound."""
    truth = np.array([0.0, 1.0, 2.0, 3.0])
    lower = np.array([-1.0, -1.0, 3.0, 2.0])
    upper = np.array([1.0, 2.0, 4.0, 3.0])

    assert interval_coverage(truth, lower, upper) == 0.75
    scores = score_points(truth, truth, lower=lower, upper=upper)
    assert scores["coverage_90"] == 0.75


def test_ssim_of_identical_grids_is_one():
    """SSIM(x, x) = 1; noise lowers it; a flat guess lowers it more."""
    reference = _bumpy()
    noisy = reference + 30.0 * np.random.default_rng(1).standard_normal(reference.shape)

    # Identical numerator and denominator: 1 up to the last bit.
    assert ssim(reference, reference) == pytest.approx(1.0, abs=1e-12)
    assert 0.0 < ssim(noisy, reference) < 1.0
    assert ssim(np.full_like(reference, reference.mean()), reference) < ssim(
        noisy, reference
    )


def test_ssim_ignores_masked_cells():
    """Garbage under the mask changes nothing."""
    reference = _bumpy()
    pred = reference + 5.0
    mask = np.ones(reference.shape, dtype=bool)
    mask[:10] = False
    spoiled = pred.copy()
    spoiled[:10] = 1e6

    # Masked cells enter neither the local moments nor the mean.
    assert ssim(spoiled, reference, mask=mask) == pytest.approx(
        ssim(pred, reference, mask=mask), abs=1e-12
    )


def test_psnr_of_known_noise():
    """Range 100 m, errors of -/+ 2 m: PSNR = 10 log10(100^2 / 4) dB."""
    reference = np.linspace(0.0, 100.0, 64).reshape(8, 8)
    errors = np.where(np.indices((8, 8)).sum(axis=0) % 2, 2.0, -2.0)

    value = psnr(reference + errors, reference)

    # MSE is exactly 4 in float64 (sums of 4.0).
    assert value == pytest.approx(10 * math.log10(100.0**2 / 4.0), abs=1e-9)
    assert psnr(reference, reference) == math.inf


def test_tri_of_a_plane():
    """Slope of 2 m per cell along x: six neighbours differ by 2, TRI 1.5."""
    plane = np.add.outer(np.zeros(6), 2.0 * np.arange(8))

    tri = terrain_ruggedness(plane)

    np.testing.assert_array_equal(tri[1:-1, 1:-1], 1.5)
    assert np.isnan(tri[0]).all() and np.isnan(tri[:, -1]).all()


def test_score_grid_of_a_perfect_and_a_smoothed_prediction():
    """Perfect: errors 0, R2 1, SSIM 1, TRI ratio 1; half the relief: 0.5."""
    reference = np.add.outer(3.0 * np.arange(6), 2.0 * np.arange(8)) - 500.0

    perfect = score_grid(reference, reference)
    flatter = score_grid(
        reference.mean() + 0.5 * (reference - reference.mean()), reference
    )

    assert perfect["rmse"] == 0 and perfect["mae"] == 0 and perfect["r2"] == 1
    assert perfect["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert perfect["tri_ratio"] == 1.0
    # TRI is linear in the relief: half, to round-off.
    assert flatter["tri_ratio"] == pytest.approx(0.5, rel=1e-12)
    assert flatter["r2"] < 1


def test_score_grid_mask_and_shape_check():
    """Masked-out errors do not count; grids of two shapes raise."""
    reference = _bumpy(shape=(10, 12))
    pred = reference.copy()
    pred[0, 0] += 100.0
    mask = np.ones(reference.shape, dtype=bool)
    mask[0, 0] = False

    assert score_grid(pred, reference, mask=mask)["rmse"] == 0
    with pytest.raises(ConfigError, match="block_average"):
        score_grid(np.zeros((20, 24)), reference)


def test_sample_at_on_a_plane():
    """Bilinear is exact on a plane; nearest takes the cell; outside NaN."""
    plane = np.add.outer(-0.1 * (Y - Y[0]), 0.2 * (X - X[0]))
    grid = _grid(plane)
    px = np.array([X[0] + 40.0, X[3] + 75.0, X[-1] + 70.0, X[-1] + 80.0])
    py = np.array([Y[0] - 10.0, Y[2] - 100.0, Y[-1], Y[-1]])

    linear = sample_at(grid, px, py)
    nearest = sample_at(grid, px, py, method="nearest")

    # A plane is linear in x and y: round-off of sums of 1e5 m terms.
    expected = -0.1 * (py - Y[0]) + 0.2 * (px - X[0])
    np.testing.assert_allclose(linear[:2], expected[:2], atol=1e-8)
    assert nearest[1] == plane[3, 4]
    # Within half a cell beyond the last centre: the edge value; beyond: NaN.
    assert linear[2] == plane[-1, -1]
    assert np.isnan(linear[3]) and np.isnan(nearest[3])


def test_sample_at_reads_a_dataset_variable():
    """A Dataset's ``bed`` at a cell centre is that cell's value."""
    values = np.arange(48.0).reshape(6, 8)
    ds = xr.Dataset({"bed": _grid(values)})

    assert sample_at(ds, np.array([X[5]]), np.array([Y[2]]))[0] == values[2, 5]


def test_block_average():
    """2 x 2 blocks of a 4 x 4 grid."""
    fine = np.arange(16.0).reshape(4, 4)

    np.testing.assert_array_equal(block_average(fine, 2), [[2.5, 4.5], [10.5, 12.5]])


def test_score_twin_away_from_picks():
    """Error 1 m next to the picks and 3 m farther than 400 m from them."""
    truth = np.zeros((6, 8))
    pick_x, pick_y = np.array([X[0]]), np.array([Y[0]])
    xx, yy = np.meshgrid(X, Y)
    far = np.hypot(xx - X[0], yy - Y[0]) > 400.0
    pred = np.where(far, 3.0, 1.0)

    scores = score_twin(
        pred, truth, x=X, y=Y, pick_x=pick_x, pick_y=pick_y, away_distance=400.0
    )

    assert scores["rmse_true_away"] == 3.0
    assert scores["share_away"] == far.mean()
    assert scores["rmse_true"] == pytest.approx(np.sqrt(np.mean(pred**2)))


def test_comparison_table_puts_methods_side_by_side():
    """Nested scores become dotted columns; a missing metric is NaN."""
    results = {
        "kriging": {"points": {"rmse": 30.0, "n": 5}, "grid": {"ssim": 0.8}},
        "bedmachine": {"points": {"rmse": 50.0, "n": 5, "coverage_90": 0.7}},
    }

    table = comparison_table(results)

    assert list(table.index) == ["kriging", "bedmachine"]
    assert list(table.columns) == [
        "grid.ssim",
        "points.n",
        "points.rmse",
        "points.coverage_90",
    ]
    assert np.isnan(table.loc["kriging", "points.coverage_90"])
    assert table.loc["bedmachine", "points.rmse"] == 50.0
