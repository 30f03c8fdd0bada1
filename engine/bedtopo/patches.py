"""Training patches of a grid: targets, allowed patches and a torch Dataset.

A patch is a square of ``size x size`` cells of the 150 m grid (rows from
north to south, columns from west to east, as the grid's ``("y", "x")``)
and the matching ``f size x f size`` fine cells of the subgrid model. The
same Dataset serves :class:`~engine.bedtopo.models.DeepTopoNet` (any
factor ``f``) and :class:`~engine.bedtopo.models.PaperModel` (``f = 1``).

Which patches train is the split's business
(:mod:`engine.bedtopo.splits`): :func:`training_origins` keeps a patch only
if every one of its cells is in ``Split.patch_allowed`` (so no pixel of a
held-out block or its buffer is ever in a training patch); in the line
split every patch is allowed, and the held-out lines are removed from the
*targets* by :func:`grid_targets`.

Augmentation (off by default). Flipping a patch east-west reverses
easting, so every channel that is odd in easting must change sign: the
velocity ``surface_velocity_x``, each ``*_gradient_x``, and the trend
terms with an odd power of x; a ``*_gradient_x`` of ``surface_velocity_x``
is even and keeps its sign. North-south flips do the same for northing.
Channels are z-scored, so a sign change of the raw value ``v`` is
``z -> -z - 2 mean / std`` in scaled units. Quarter turns are not offered:
they would swap the easting and northing channels as well. It is off by
default because a flipped patch is a glacier flowing the other way over a
mirrored trend surface, not a sample of the region being mapped; whether
it helps is to be measured per region.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch.utils.data import Dataset

from engine.bedtopo.errors import ConfigError
from engine.bedtopo.features import FeatureScaler
from engine.bedtopo.splits import Split, patch_origins
from engine.bedtopo.targets import pick_beds, radar_to_fine_grid

__all__ = [
    "GridTargets",
    "grid_targets",
    "training_origins",
    "flip_parity",
    "PatchDataset",
]

_TREND = re.compile(r"^trend_(?:x(\d*))?(?:y(\d*))?$")


@dataclass(frozen=True)
class GridTargets:
    """Training targets of a whole grid.

    Attributes
    ----------
    bedmachine : numpy.ndarray
        Shape ``(H, W)``, float32, BedMachine bed (m), finite: NaN cells
        are set to the mean of the finite ones (they are out of the mask),
        so that the array can also be the default model's base bed.
    bedmachine_mask : numpy.ndarray
        Shape ``(H, W)``, bool: cells where BedMachine is a target.
    radar_bed : numpy.ndarray
        Shape ``(f H, f W)``, float32, mean radar bed of the training picks
        per fine cell (m), 0 where none.
    radar_mask : numpy.ndarray
        Shape ``(f H, f W)``, bool: fine cells with a training radar target.
    factor : int
        The subgrid factor ``f``.
    """

    bedmachine: np.ndarray = field(repr=False)
    bedmachine_mask: np.ndarray = field(repr=False)
    radar_bed: np.ndarray = field(repr=False)
    radar_mask: np.ndarray = field(repr=False)
    factor: int = 1


def grid_targets(
    grid: xr.Dataset,
    picks: pd.DataFrame,
    *,
    factor: int,
    split: Split | None = None,
) -> GridTargets:
    """BedMachine and radar targets of a grid, less what a split holds out.

    The radar bed of a pick is the grid's surface elevation at its cell
    minus its ice thickness (:func:`engine.bedtopo.targets.pick_beds`),
    averaged on the fine cell it falls in.

    Parameters
    ----------
    grid : xarray.Dataset
        The 150 m grid (dims ``("y", "x")``, EPSG:3413) with
        ``bed_bedmachine`` and ``surface_elevation``.
    picks : pandas.DataFrame
        The radar-picks table the split was made from (same rows, same
        order).
    factor : int
        Subgrid factor, 1, 2 or 3.
    split : Split, optional
        Only its training picks on its ``train_radar_mask`` cells are radar
        targets, and BedMachine only on ``bedmachine_train_mask``; every
        pick and cell when omitted.

    Returns
    -------
    GridTargets
    """
    bed = grid["bed_bedmachine"].transpose("y", "x").to_numpy().astype("float32")
    finite = np.isfinite(bed)
    if not finite.any():
        raise ConfigError("bed_bedmachine is NaN everywhere; no target to train on")
    filled = np.where(finite, bed, bed[finite].mean()).astype("float32")

    # BedMachine mask: finite cells the split leaves to training.
    bedmachine_mask = finite.copy()
    if split is not None:
        bedmachine_mask &= split.bedmachine_train_mask

    # Radar: the training picks, averaged on fine cells.
    table = picks.reset_index(drop=True)
    if split is not None:
        table = table.iloc[split.train_picks]
    easting, northing, beds = pick_beds(table, grid)
    fine = radar_to_fine_grid(
        easting,
        northing,
        beds,
        x=grid["x"].to_numpy(),
        y=grid["y"].to_numpy(),
        factor=factor,
    )
    radar_mask = fine.mask
    if split is not None:
        allowed = np.kron(split.train_radar_mask, np.ones((factor, factor), bool))
        radar_mask = radar_mask & allowed
    radar_bed = np.where(radar_mask, fine.bed, 0.0).astype("float32")
    return GridTargets(
        bedmachine=filled,
        bedmachine_mask=bedmachine_mask,
        radar_bed=radar_bed,
        radar_mask=radar_mask,
        factor=factor,
    )


def training_origins(
    shape: tuple[int, int],
    *,
    size: int,
    stride: int,
    split: Split | None = None,
    window: tuple[slice, slice] | None = None,
) -> np.ndarray:
    """Top-left cells of the patches a split allows for training.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)`` of the grid.
    size, stride : int
        Patch side and step, cells (see
        :func:`engine.bedtopo.splits.patch_origins`).
    split : Split, optional
        A patch is kept only if all its cells are in ``split.patch_allowed``
        (and, for the leaky split, if it is one of its training patches).
    window : tuple of slice, optional
        ``(rows, cols)`` of the grid to tile; the whole grid when omitted.

    Returns
    -------
    numpy.ndarray
        int64, shape ``(P, 2)``: (row, col).
    """
    origins = patch_origins(shape, size=size, stride=stride, window=window)
    if split is None or len(origins) == 0:
        return origins

    # Count disallowed cells per patch with a summed-area table.
    blocked = np.pad((~split.patch_allowed).astype("int64"), ((1, 0), (1, 0)))
    table = blocked.cumsum(0).cumsum(1)
    r, c = origins[:, 0], origins[:, 1]
    inside = table[r + size, c + size] - table[r, c + size]
    inside = inside - table[r + size, c] + table[r, c]
    origins = origins[inside == 0]

    # The leaky split names its training patches.
    if split.train_patch_origins is not None:
        named = {tuple(o) for o in split.train_patch_origins.tolist()}
        origins = np.asarray(
            [o for o in origins.tolist() if tuple(o) in named], dtype="int64"
        ).reshape(-1, 2)
    return origins


def flip_parity(channels: tuple[str, ...] | list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Which channels change sign under an east-west or north-south flip.

    Parameters
    ----------
    channels : sequence of str
        Feature channel names (:mod:`engine.bedtopo.features`).

    Returns
    -------
    odd_x, odd_y : numpy.ndarray
        Bool, shape ``(C,)``: odd in easting, odd in northing.

    Examples
    --------
    >>> odd_x, odd_y = flip_parity(["surface_velocity_x_gradient_x", "trend_xy"])
    >>> odd_x.tolist(), odd_y.tolist()
    ([False, True], [False, True])
    """
    odd_x, odd_y = [], []
    for name in channels:
        power_x = power_y = 0
        match = _TREND.match(name)
        if match and name != "trend_":
            power_x = 0 if match.group(1) is None else int(match.group(1) or 1)
            power_y = 0 if match.group(2) is None else int(match.group(2) or 1)
        else:
            base = name
            if name.endswith("_gradient_x"):
                power_x, base = 1, name[: -len("_gradient_x")]
            elif name.endswith("_gradient_y"):
                power_y, base = 1, name[: -len("_gradient_y")]
            if base == "surface_velocity_x":
                power_x += 1
            elif base == "surface_velocity_y":
                power_y += 1
        odd_x.append(power_x % 2 == 1)
        odd_y.append(power_y % 2 == 1)
    return np.asarray(odd_x), np.asarray(odd_y)


class PatchDataset(Dataset):
    """Square patches of features and targets for either model.

    Parameters
    ----------
    features : numpy.ndarray
        Shape ``(C, H, W)``, float32, z-scored features of the grid.
    targets : GridTargets
        Targets of the same grid.
    origins : numpy.ndarray
        Shape ``(P, 2)``, (row, col) of each patch's top-left cell.
    size : int
        Patch side, cells.
    augment : bool, default False
        Random east-west and north-south flips, with the sign changes of the
        module docstring; needs ``channels`` and ``scaler``.
    channels : sequence of str, optional
        The ``C`` channel names.
    scaler : FeatureScaler, optional
        The scaler the features were z-scored with.
    seed : int, default 0
        Seed of the flips.

    Shapes
    ------
    Item ``i`` is a tuple of tensors, with ``S = size`` and ``f`` the
    targets' factor:

    - features: ``(C, S, S)``, float32, z-scored
    - bedmachine: ``(1, S, S)``, float32, BedMachine bed (m), finite; also
      the base bed of :class:`~engine.bedtopo.models.DeepTopoNet`
    - bedmachine_mask: ``(1, S, S)``, bool
    - radar_bed: ``(1, f S, f S)``, float32, m, 0 off the mask
    - radar_mask: ``(1, f S, f S)``, bool
    """

    def __init__(
        self,
        features: np.ndarray,
        targets: GridTargets,
        origins: np.ndarray,
        *,
        size: int,
        augment: bool = False,
        channels: tuple[str, ...] | list[str] | None = None,
        scaler: FeatureScaler | None = None,
        seed: int = 0,
    ) -> None:
        if features.shape[1:] != targets.bedmachine.shape:
            raise ConfigError(
                f"features {features.shape[1:]} and targets "
                f"{targets.bedmachine.shape} are not on the same grid"
            )
        self.features = torch.as_tensor(np.ascontiguousarray(features, "float32"))
        self.bedmachine = torch.as_tensor(targets.bedmachine)[None]
        self.bedmachine_mask = torch.as_tensor(targets.bedmachine_mask)[None]
        self.radar_bed = torch.as_tensor(targets.radar_bed)[None]
        self.radar_mask = torch.as_tensor(targets.radar_mask)[None]
        self.origins = np.asarray(origins, dtype="int64").reshape(-1, 2)
        self.size = size
        self.factor = targets.factor
        self.augment = augment
        self._rng = np.random.default_rng(seed)

        # Per-channel affine maps of a flip in z-score units: z -> a z + b.
        if augment:
            if channels is None or scaler is None:
                raise ConfigError("augment=True needs the channel names and scaler")
            odd_x, odd_y = flip_parity(channels)
            shift = 2.0 * np.asarray(scaler.mean) / np.asarray(scaler.std)
            self._flip = {}
            for axis, odd in (("x", odd_x), ("y", odd_y)):
                scale = np.where(odd, -1.0, 1.0)
                offset = np.where(odd, -shift, 0.0)
                self._flip[axis] = (
                    torch.as_tensor(scale, dtype=torch.float32)[:, None, None],
                    torch.as_tensor(offset, dtype=torch.float32)[:, None, None],
                )

    def __len__(self) -> int:
        return len(self.origins)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        row, col = (int(v) for v in self.origins[index])
        size, f = self.size, self.factor

        # Cut the patch on the coarse and the fine grid.
        coarse = (slice(None), slice(row, row + size), slice(col, col + size))
        fine = (
            slice(None),
            slice(f * row, f * (row + size)),
            slice(f * col, f * (col + size)),
        )
        items = [
            self.features[coarse],
            self.bedmachine[coarse],
            self.bedmachine_mask[coarse],
            self.radar_bed[fine],
            self.radar_mask[fine],
        ]

        # Flips: reverse columns (easting) or rows (northing), fix signs.
        if self.augment:
            for axis, dim in (("x", -1), ("y", -2)):
                if self._rng.random() < 0.5:
                    items = [t.flip(dim) for t in items]
                    scale, offset = self._flip[axis]
                    items[0] = items[0] * scale + offset
        return tuple(t.contiguous() for t in items)
