"""Patches: counts, shapes, masked targets and sign-consistent flips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from engine.bedtopo.features import FeatureConfig, make_features
from engine.bedtopo.patches import (
    PatchDataset,
    flip_parity,
    grid_targets,
    training_origins,
)
from engine.bedtopo.splits import SplitConfig, make_split
from engine.data.twin import make_twin


@pytest.fixture(scope="module")
def twin():
    """A 40 x 48 twin (6 x 7.2 km)."""
    return make_twin(seed=4, ny=40, nx=48, n_lines=6, n_troughs=1, n_ridges=1)


@pytest.fixture(scope="module")
def features(twin):
    return make_features(twin.grid, config=FeatureConfig(include_bedmachine=True))


@pytest.mark.parametrize("factor", [1, 2, 3])
def test_patch_count_and_shapes(twin, features, factor):
    """16-cell patches, stride 8, on 40 x 48 cells: 4 x 5 patches."""
    targets = grid_targets(twin.grid, twin.radar, factor=factor)
    origins = training_origins((40, 48), size=16, stride=8)
    dataset = PatchDataset(features.values, targets, origins, size=16)
    assert len(dataset) == 4 * 5
    feats, bed, bed_mask, radar_bed, radar_mask = dataset[3]
    channels = features.values.shape[0]
    assert feats.shape == (channels, 16, 16)
    assert bed.shape == bed_mask.shape == (1, 16, 16)
    assert radar_bed.shape == radar_mask.shape == (1, 16 * factor, 16 * factor)
    assert bed_mask.dtype == radar_mask.dtype == torch.bool


def test_held_out_line_is_no_radar_target(twin):
    """Fine radar targets come only from the training picks' cells."""
    split = make_split(twin.grid, twin.radar, SplitConfig(n_folds=3, fold=0))
    targets = grid_targets(twin.grid, twin.radar, factor=2, split=split)
    coarse = targets.radar_mask.reshape(40, 2, 48, 2).any(axis=(1, 3))
    assert coarse.any()
    assert not (coarse & split.heldout_radar_mask).any()
    assert not (targets.bedmachine_mask & split.heldout_radar_mask).any()


def test_flip_parity_of_names():
    """Velocity, gradients and trend powers change sign as they should."""
    names = [
        "surface_elevation",
        "surface_velocity_x",
        "surface_velocity_y_gradient_x",
        "surface_velocity_x_gradient_x",
        "trend_x2",
        "trend_xy",
        "trend_y",
    ]
    odd_x, odd_y = flip_parity(names)
    assert odd_x.tolist() == [False, True, True, False, False, True, False]
    assert odd_y.tolist() == [False, False, True, False, False, True, True]


def test_flip_matches_features_of_a_mirrored_grid(twin, features):
    """An east-west flip of a patch equals the features of the mirrored grid.

    Mirroring the grid's easting (reversed columns, x -> -x, vx -> -vx)
    and z-scoring with the same scaler is the oracle for the flip.
    """
    grid = twin.grid
    mirrored = grid.isel(x=slice(None, None, -1))
    mirrored = mirrored.assign_coords(x=-grid["x"].values[::-1])
    mirrored["surface_velocity_x"] = -mirrored["surface_velocity_x"]
    scaler = features.scaler
    # The trend extent of the mirror is the mirrored extent.
    x_min, x_max, y_min, y_max = scaler.trend_extent
    mirror_scaler = type(scaler)(
        channels=scaler.channels,
        mean=scaler.mean,
        std=scaler.std,
        trend_extent=(-x_max, -x_min, y_min, y_max),
    )
    config = FeatureConfig(include_bedmachine=True)
    expected = make_features(mirrored, config=config, scaler=mirror_scaler).values

    # A 40-cell patch at the west edge; its mirror is columns 8..47.
    targets = grid_targets(grid, twin.radar, factor=1)
    dataset = PatchDataset(
        features.values,
        targets,
        np.array([[0, 0]]),
        size=40,
        augment=True,
        channels=features.channels,
        scaler=scaler,
        seed=0,
    )

    # Each draw flips east-west, north-south, both or neither; an
    # east-west-only draw (one in four) must equal the mirror. Tolerance:
    # float32 rounding of z-scores of order 1.
    for _ in range(20):
        flipped = dataset[0][0].numpy()
        if np.allclose(flipped, expected[:, :, 8:48], atol=1e-3):
            return
    pytest.fail("no east-west flip matched the mirrored grid in 20 draws")
