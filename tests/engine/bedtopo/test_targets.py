"""Tests of radar targets on the fine grid, ``engine.bedtopo.targets``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from engine.bedtopo.targets import fine_coordinates, pick_beds, radar_to_fine_grid

#: A 2 x 3 window of 150 m cells, centres in EPSG:3413 metres.
X = np.array([75.0, 225.0, 375.0])
Y = np.array([-75.0, -225.0])


def test_fine_coordinates_split_cells():
    """Factor 3: sub-cell centres 50 m apart, inside their parent cell."""
    x_fine, y_fine = fine_coordinates(X, Y, factor=3)

    # Sums of exact binary-friendly multiples of 50: float64 round-off.
    np.testing.assert_allclose(x_fine[:4], [25.0, 75.0, 125.0, 175.0])
    np.testing.assert_allclose(y_fine[:4], [-25.0, -75.0, -125.0, -175.0])
    assert (x_fine.size, y_fine.size) == (9, 6)


def test_picks_land_in_their_fine_cell():
    """Picks go to the 75 m cell they fall in; two in one cell are averaged."""
    easting = np.array([10.0, 60.0, 440.0, 440.0, 999.0])
    northing = np.array([-10.0, -70.0, -290.0, -295.0, -10.0])
    bed = np.array([100.0, 200.0, -50.0, -70.0, 5.0])

    fine = radar_to_fine_grid(easting, northing, bed, x=X, y=Y, factor=2)

    assert fine.bed.shape == (4, 6)
    assert fine.count.sum() == 4  # the pick at x = 999 m is outside
    assert fine.bed[0, 0] == 150.0 and fine.count[0, 0] == 2
    assert fine.bed[3, 5] == -60.0 and fine.count[3, 5] == 2
    assert fine.mask.sum() == 2 and np.isnan(fine.bed[1, 1])


def test_pick_beds_from_thickness():
    """Thickness picks get the surface of their 150 m cell minus thickness."""
    grid = xr.Dataset(
        {
            "surface_elevation": (
                ("y", "x"),
                np.array([[900.0, 910, 920], [930, 940, 950]]),
            )
        },
        coords={"x": X, "y": Y},
    )
    picks = pd.DataFrame(
        {
            "x": [200.0, 10.0],
            "y": [-200.0, -10.0],
            "ice_thickness": [400.0, np.nan],
            "bed_elevation": [np.nan, -30.0],
        }
    )

    easting, northing, bed = pick_beds(picks, grid)

    np.testing.assert_array_equal(bed, [940.0 - 400.0, -30.0])
    np.testing.assert_array_equal(easting, [200.0, 10.0])
