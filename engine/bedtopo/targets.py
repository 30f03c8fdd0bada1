"""Radar targets on the fine (subgrid) grid of a window.

A 150 m window of ``H x W`` cells split by a factor ``f`` has ``f H x f W``
fine cells of ``150 / f`` m. Row 0 is the north edge and column 0 the west
edge, as on the 150 m grid (``CONVENTIONS.md``); fine cell ``(i, j)`` lies
in 150 m cell ``(i // f, j // f)``. Each radar pick supervises the fine
cell it falls in; picks in one fine cell are averaged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from engine.bedtopo.errors import FeatureError
from engine.data.radar import picks_in_grid

__all__ = ["FineRadar", "fine_coordinates", "pick_beds", "radar_to_fine_grid"]


@dataclass(frozen=True)
class FineRadar:
    """Radar bed averaged on the fine cells of a window.

    Attributes
    ----------
    bed : numpy.ndarray
        Shape ``(f H, f W)``, float32, mean radar bed (m), NaN where no pick.
    count : numpy.ndarray
        Shape ``(f H, f W)``, int64, picks per fine cell (0 where none).
    factor : int
        The subgrid factor ``f``.
    """

    bed: np.ndarray
    count: np.ndarray
    factor: int

    @property
    def mask(self) -> np.ndarray:
        """Shape ``(f H, f W)``, bool: fine cells holding a pick."""
        return self.count > 0


def fine_coordinates(
    x: np.ndarray, y: np.ndarray, *, factor: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre coordinates of the fine grid of a window.

    Parameters
    ----------
    x, y : numpy.ndarray
        Cell centres of the 150 m window, m (EPSG:3413); ``x`` increasing,
        ``y`` decreasing, evenly spaced, at least 2 each.
    factor : int
        Subgrid factor, >= 1.

    Returns
    -------
    x_fine, y_fine : numpy.ndarray
        ``f W`` eastings (increasing) and ``f H`` northings (decreasing), m.
    """
    dx, dy = _steps(x, y)
    offsets = (np.arange(factor) + 0.5) / factor - 0.5  # sub-cell centres, in cells
    x_fine = (x[:, None] + offsets[None, :] * dx).ravel()
    y_fine = (y[:, None] - offsets[None, :] * dy).ravel()
    return x_fine, y_fine


def radar_to_fine_grid(
    easting: np.ndarray,
    northing: np.ndarray,
    bed_elevation: np.ndarray,
    *,
    x: np.ndarray,
    y: np.ndarray,
    factor: int,
) -> FineRadar:
    """Average radar beds on the fine cells of a window.

    Parameters
    ----------
    easting, northing : numpy.ndarray
        Pick positions, m (EPSG:3413), shape ``(N,)``.
    bed_elevation : numpy.ndarray
        Radar bed at each pick, m, shape ``(N,)``; NaN picks are skipped.
    x, y : numpy.ndarray
        Cell centres of the 150 m window (see :func:`fine_coordinates`).
    factor : int
        Subgrid factor, >= 1.

    Returns
    -------
    FineRadar
        Mean bed and count per fine cell; picks outside the window are
        left out.
    """
    if not isinstance(factor, int) or factor < 1:
        raise FeatureError(f"factor must be a positive integer, got {factor!r}")
    x = np.asarray(x, dtype="float64")
    y = np.asarray(y, dtype="float64")
    dx, dy = _steps(x, y)
    n_rows, n_cols = y.size * factor, x.size * factor

    # Fine row and column of each pick, from the window's north-west corner.
    west = x[0] - dx / 2
    north = y[0] + dy / 2
    col = np.floor((np.asarray(easting) - west) / (dx / factor)).astype("int64")
    row = np.floor((north - np.asarray(northing)) / (dy / factor)).astype("int64")
    bed = np.asarray(bed_elevation, dtype="float64")
    keep = (col >= 0) & (col < n_cols) & (row >= 0) & (row < n_rows) & np.isfinite(bed)

    # Mean and count per fine cell.
    flat = row[keep] * n_cols + col[keep]
    count = np.bincount(flat, minlength=n_rows * n_cols)
    total = np.bincount(flat, weights=bed[keep], minlength=n_rows * n_cols)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / count, np.nan)
    return FineRadar(
        bed=mean.reshape(n_rows, n_cols).astype("float32"),
        count=count.reshape(n_rows, n_cols).astype("int64"),
        factor=factor,
    )


def pick_beds(
    picks: pd.DataFrame, grid: xr.Dataset
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions and radar bed of the picks inside a grid.

    The bed of a thickness pick is the grid's ``surface_elevation`` at its
    150 m cell minus the thickness, as in
    :func:`engine.data.radar.radar_to_grid`; a bed-point pick keeps its bed.

    Parameters
    ----------
    picks : pandas.DataFrame
        A radar-picks table (``CONVENTIONS.md``), EPSG:3413.
    grid : xarray.Dataset
        The 150 m window, dims ``("y", "x")``, with ``surface_elevation``
        when picks carry thickness.

    Returns
    -------
    easting, northing, bed : numpy.ndarray
        Shape ``(N,)`` each, m, for the ``N`` picks inside the grid; bed NaN
        where a pick has neither thickness nor bed.
    """
    inside = picks_in_grid(picks, grid)
    bed = inside["bed_elevation"].to_numpy(dtype="float64").copy()
    thickness = inside["ice_thickness"].to_numpy(dtype="float64")
    has_thickness = np.isfinite(thickness)
    if has_thickness.any():
        if "surface_elevation" not in grid:
            raise FeatureError(
                "radar thickness needs the grid's surface_elevation to give a bed; "
                "use a grid that has it"
            )
        surface = grid["surface_elevation"].transpose("y", "x").to_numpy()
        cell_surface = surface[inside["row"].to_numpy(), inside["col"].to_numpy()]
        bed[has_thickness] = cell_surface[has_thickness] - thickness[has_thickness]
    return (
        inside["x"].to_numpy(dtype="float64"),
        inside["y"].to_numpy(dtype="float64"),
        bed,
    )


def _steps(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Positive cell sizes along x and y, checking the axis directions."""
    if x.size < 2 or y.size < 2:
        raise FeatureError("the window needs at least 2 x 2 cells")
    dx = float(x[1] - x[0])
    dy = float(y[0] - y[1])
    if not (dx > 0 and dy > 0):
        raise FeatureError(
            "the window must have x increasing and y decreasing (CONVENTIONS.md); "
            "bring it to the conventions with engine.data.grids.finish_grid"
        )
    return dx, dy
