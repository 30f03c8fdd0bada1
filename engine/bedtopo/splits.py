"""Spatially honest train / hold-out splits of a grid and its radar picks.

Neighbouring cells of a bed grid are strongly correlated, and radar picks
are spaced about 15 m to 1 km along a flight line. A random split over
overlapping patches (the released code's 80/20) therefore scores a model
on cells it has seen, or nearly. Two honest splits are offered, and the
released one only under a name that says what it does:

``kind="lines"``, flight-line hold-out
    Picks are grouped into straight flight lines (:func:`holdout_lines`),
    and whole lines are dealt to ``n_folds`` folds, balanced by pick count.
    The held-out fold's picks are left out of the training radar targets;
    so are the training picks within ``buffer_m`` of a held-out pick,
    because where a training line crosses (or repeats) a held-out line, its
    picks a few hundred metres away measure the same bed, and would let the
    model copy the answer. BedMachine stays a training target everywhere
    except on the 150 m cells of held-out picks. Training patches may
    cover held-out cells (their radar is simply not a target there).
``kind="blocks"``, block hold-out with a buffer
    The grid is cut into square blocks of ``block_size_m`` (from its
    north-west corner) and the blocks are dealt to folds, balanced by pick
    count. Inside a held-out block neither BedMachine nor radar is a
    training target, and no training patch may cover a cell of the block
    or of the ``buffer_m`` band around it, so that the network never sees
    the block's inputs while training either.
``kind="random_patches_leaky"``, the released split
    Overlapping patches are dealt at random, ``validation_fraction`` of
    them to validation. Validation patches share cells and radar picks with
    training patches, so the scores it gives are optimistic; it warns with
    :class:`SpatialLeakWarning` and exists only to reproduce the paper.

Every split is a :class:`Split`: boolean masks on the 150 m grid (dims
``("y", "x")``, row 0 at the north edge) and the positions of the training
and held-out picks in the picks table, so that evaluation can score
exactly the held-out picks.

Notes
-----
Real BedMachine was itself built from these radar lines, and the default
model takes BedMachine's bed as an input. A held-out pick is therefore not
independent of the inputs, whichever split is used; the splits only keep
it out of the *targets*. A twin (:func:`engine.data.twin.make_twin`), whose
prior does not honour the radar, gives the independent test.
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage
from scipy.spatial import cKDTree

from engine.bedtopo.errors import ConfigError
from engine.data.errors import DataWarning
from engine.data.radar import picks_in_grid

__all__ = [
    "SPLIT_KINDS",
    "SpatialLeakWarning",
    "SplitConfig",
    "Split",
    "holdout_lines",
    "deal_to_folds",
    "block_ids",
    "make_split",
    "patch_origins",
]

log = logging.getLogger(__name__)

#: Kinds of split; the last one leaks space and warns.
SPLIT_KINDS = ("lines", "blocks", "random_patches_leaky")


class SpatialLeakWarning(DataWarning):
    """A split shares cells or radar picks between training and validation."""


@dataclass(frozen=True, kw_only=True)
class SplitConfig:
    """Settings of a train / hold-out split.

    Parameters
    ----------
    kind : {"lines", "blocks", "random_patches_leaky"}
        The split (see the module docstring).
    n_folds : int
        Number of folds, >= 2.
    fold : int
        The held-out fold, ``0 <= fold < n_folds``.
    block_size_m : float
        Side of the square blocks of ``kind="blocks"``, m.
    buffer_m : float
        Lines: training picks closer than this to a held-out pick are
        dropped. Blocks: width of the band around a held-out block that no
        training patch may cover. m, >= 0.
    seed : int
        Seed of the random order used to break ties when dealing folds and
        to draw the leaky split's patches.
    max_step_m : float
        Lines: an along-track step longer than this cuts a line, m. The
        Helheim picks are about 1.15 km apart, so 2 km cuts at real gaps.
    join_gap_m, join_angle_deg : float
        Lines: consecutive pieces of one source are joined into one line
        when the gap between them is shorter than ``join_gap_m`` (m) and
        the gap's direction is within ``join_angle_deg`` (degrees) of the
        direction of both pieces (see :func:`holdout_lines`).
    validation_fraction : float
        Leaky split: share of the patches used for validation.
    """

    kind: Literal["lines", "blocks", "random_patches_leaky"] = "lines"
    n_folds: int = 4
    fold: int = 0
    block_size_m: float = 10_000.0
    buffer_m: float = 2_000.0
    seed: int = 0
    max_step_m: float = 2_000.0
    join_gap_m: float = 10_000.0
    join_angle_deg: float = 20.0
    validation_fraction: float = 0.2

    def __post_init__(self) -> None:
        if self.kind not in SPLIT_KINDS:
            raise ConfigError(f"kind must be one of {SPLIT_KINDS}, got {self.kind!r}")
        if not isinstance(self.n_folds, int) or self.n_folds < 2:
            raise ConfigError(f"n_folds must be an integer >= 2, got {self.n_folds!r}")
        if not isinstance(self.fold, int) or not 0 <= self.fold < self.n_folds:
            raise ConfigError(
                f"fold must be an integer from 0 to n_folds - 1 = {self.n_folds - 1}, "
                f"got {self.fold!r}"
            )
        for name in ("block_size_m", "max_step_m", "join_gap_m"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0 m, got {getattr(self, name)!r}")
        if not self.buffer_m >= 0:
            raise ConfigError(f"buffer_m must be >= 0 m, got {self.buffer_m!r}")
        if not 0 <= self.join_angle_deg <= 180:
            raise ConfigError(
                f"join_angle_deg must be in [0, 180], got {self.join_angle_deg!r}"
            )
        if not 0 < self.validation_fraction < 1:
            raise ConfigError(
                "validation_fraction must be in (0, 1), got "
                f"{self.validation_fraction!r}"
            )


@dataclass(frozen=True)
class Split:
    """A train / hold-out split of a grid and of the picks inside it.

    Masks are on the 150 m grid, shape ``(H, W)`` as the grid's
    ``("y", "x")`` (row 0 north); pick positions are 0-based row positions
    in the picks table given to :func:`make_split` (not its index labels).

    Attributes
    ----------
    config : SplitConfig
        The settings.
    train_radar_mask : numpy.ndarray
        Bool: cells holding at least one training pick; radar targets come
        from the training picks on these cells only.
    heldout_radar_mask : numpy.ndarray
        Bool: cells holding at least one held-out pick.
    bedmachine_train_mask : numpy.ndarray
        Bool: cells where BedMachine's bed may be a training target.
    patch_allowed : numpy.ndarray
        Bool: cells a training patch may cover; a patch with any other
        cell is not used for training.
    train_picks, heldout_picks : numpy.ndarray
        int64 positions of the training and held-out picks; disjoint
        except in the leaky split. Picks outside the grid, and training
        picks dropped by the buffer, are in neither.
    pick_fold : numpy.ndarray
        int64, one per row of the picks table: the fold that holds the
        pick out (-1 outside the grid, and for the leaky split).
    pick_line : numpy.ndarray
        int64, one per row: the hold-out line of :func:`holdout_lines`
        (-1 outside the grid); all -1 except for ``kind="lines"``.
    train_patch_origins : numpy.ndarray or None
        Leaky split only: shape ``(P, 2)``, the (row, col) of the top-left
        cell of each training patch; None for the honest splits.
    validation_cells : numpy.ndarray or None
        Bool, shape ``(H, W)``: cells of validation blocks where BedMachine
        was withheld to be a validation reference, set by the inner split
        of a block split (:func:`engine.bedtopo.experiment.inner_split`);
        None otherwise.
    """

    config: SplitConfig
    train_radar_mask: np.ndarray = field(repr=False)
    heldout_radar_mask: np.ndarray = field(repr=False)
    bedmachine_train_mask: np.ndarray = field(repr=False)
    patch_allowed: np.ndarray = field(repr=False)
    train_picks: np.ndarray = field(repr=False)
    heldout_picks: np.ndarray = field(repr=False)
    pick_fold: np.ndarray = field(repr=False)
    pick_line: np.ndarray = field(repr=False)
    train_patch_origins: np.ndarray | None = field(default=None, repr=False)
    validation_cells: np.ndarray | None = field(default=None, repr=False)

    @property
    def n_lines(self) -> int:
        """Number of hold-out lines inside the grid (0 unless ``"lines"``)."""
        lines = self.pick_line[self.pick_line >= 0]
        return int(np.unique(lines).size)


def holdout_lines(
    picks: pd.DataFrame,
    *,
    max_step_m: float = 2_000.0,
    join_gap_m: float = 10_000.0,
    join_angle_deg: float = 20.0,
) -> np.ndarray:
    """Group picks, in file order, into straight flight lines for hold-out.

    Cutting: a new piece starts where the ``source`` id changes or where
    the step from the previous pick is longer than ``max_step_m``.

    Joining: piece ``B`` is joined to the line of the piece ``A`` just
    before it when both have the same ``source``, the gap from ``A``'s
    last pick to ``B``'s first pick is shorter than ``join_gap_m``, and
    the gap's direction is within ``join_angle_deg`` of the direction of
    ``A`` and of ``B``. A piece's direction is the chord over its last (for
    ``A``) or first (for ``B``) five picks; a single-pick piece has none,
    and only the other piece's direction is tested (two single picks are
    joined on distance alone). So a line interrupted by a few missing
    picks stays one line, while a turn of the aircraft starts a new one.

    Parameters
    ----------
    picks : pandas.DataFrame
        A radar-picks table (``CONVENTIONS.md``) in file order: ``x``,
        ``y`` (m, EPSG:3413) and ``source``.
    max_step_m : float, default 2000
        Longest along-track step inside a piece, m.
    join_gap_m : float, default 10000
        Longest gap bridged by a join, m.
    join_angle_deg : float, default 20
        Largest change of direction bridged by a join, degrees.

    Returns
    -------
    numpy.ndarray
        int64, shape ``(N,)``: line id of each pick, 0, 1, 2, ... in order
        of first appearance.

    Examples
    --------
    >>> frame = pd.DataFrame({"x": [0.0, 1e3, 2e3, 6e3, 7e3, 7e3, 7e3],
    ...                       "y": [0.0, 0.0, 0.0, 0.0, 0.0, 1e3, 2e3],
    ...                       "source": [1, 1, 1, 1, 1, 1, 1]})
    >>> holdout_lines(frame).tolist()
    [0, 0, 0, 0, 0, 0, 0]
    """
    n = len(picks)
    if n == 0:
        return np.zeros(0, dtype="int64")
    x = picks["x"].to_numpy(dtype="float64")
    y = picks["y"].to_numpy(dtype="float64")
    source = picks["source"].to_numpy()

    # Cut into pieces at source changes and long steps.
    step = np.hypot(np.diff(x), np.diff(y))
    cut = (step > max_step_m) | (source[1:] != source[:-1])
    starts = np.concatenate([[0], np.flatnonzero(cut) + 1])
    ends = np.concatenate([starts[1:], [n]])  # exclusive

    # Join each piece to the previous line when it continues it.
    cos_limit = math.cos(math.radians(join_angle_deg))
    piece_line = np.zeros(starts.size, dtype="int64")
    for k in range(1, starts.size):
        a_end, b_start = ends[k - 1] - 1, starts[k]
        joined = source[a_end] == source[b_start]
        gap = np.array([x[b_start] - x[a_end], y[b_start] - y[a_end]])
        gap_length = float(np.hypot(*gap))
        joined = joined and gap_length < join_gap_m
        if joined and gap_length > 0:
            a_first = max(starts[k - 1], a_end - 4)
            b_last = min(ends[k] - 1, b_start + 4)
            for first, last in ((a_first, a_end), (b_start, b_last)):
                chord = np.array([x[last] - x[first], y[last] - y[first]])
                length = float(np.hypot(*chord))
                if length > 0 and chord @ gap / (length * gap_length) < cos_limit:
                    joined = False
        piece_line[k] = piece_line[k - 1] if joined else piece_line[k - 1] + 1

    # One id per pick.
    return np.repeat(piece_line, ends - starts)


def deal_to_folds(
    weights: np.ndarray, n_folds: int, *, seed: int = 0
) -> np.ndarray:
    """Deal items to folds so that each fold's total weight is about even.

    Items are taken heaviest first (ties in a seeded random order) and each
    goes to the fold with the least weight so far, then the fewest items.

    Parameters
    ----------
    weights : numpy.ndarray
        Shape ``(M,)``, >= 0: e.g. the pick count of each line or block.
    n_folds : int
        Number of folds.
    seed : int
        Seed of the tie-breaking order.

    Returns
    -------
    numpy.ndarray
        int64, shape ``(M,)``: the fold of each item.
    """
    weights = np.asarray(weights, dtype="float64")
    rng = np.random.default_rng(seed)
    order = rng.permutation(weights.size)
    order = order[np.argsort(-weights[order], kind="stable")]
    fold_weight = np.zeros(n_folds)
    fold_items = np.zeros(n_folds, dtype="int64")
    folds = np.empty(weights.size, dtype="int64")
    for item in order:
        target = int(np.lexsort((fold_items, fold_weight))[0])
        folds[item] = target
        fold_weight[target] += weights[item]
        fold_items[target] += 1
    return folds


def patch_origins(
    shape: tuple[int, int],
    *,
    size: int,
    stride: int,
    window: tuple[slice, slice] | None = None,
) -> np.ndarray:
    """Top-left cells of square patches tiling a window of a grid.

    Patches start every ``stride`` cells from the window's top-left corner;
    where the stride does not reach the far edge, one more patch is placed
    flush with it, so that every cell of the window is in some patch.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)`` of the grid.
    size, stride : int
        Patch side and step, cells (>= 1).
    window : tuple of slice, optional
        ``(rows, cols)`` slices of the grid (step 1), e.g. a
        :class:`engine.data.regions.GridWindow`'s; the whole grid when
        omitted. A window smaller than ``size`` gives no patch.

    Returns
    -------
    numpy.ndarray
        int64, shape ``(P, 2)``: (row, col) in grid cells.
    """
    if size < 1 or stride < 1:
        raise ConfigError(f"size and stride must be >= 1, got {size}, {stride}")
    rows = range(*window[0].indices(shape[0])) if window else range(shape[0])
    cols = range(*window[1].indices(shape[1])) if window else range(shape[1])

    def starts(axis: range) -> list[int]:
        if len(axis) < size:
            return []
        first, last = axis.start, axis.start + len(axis) - size
        out = list(range(first, last + 1, stride))
        if out[-1] != last:
            out.append(last)
        return out

    grid = [(r, c) for r in starts(rows) for c in starts(cols)]
    return np.asarray(grid, dtype="int64").reshape(-1, 2)


def make_split(
    grid: xr.Dataset,
    picks: pd.DataFrame,
    config: SplitConfig | None = None,
    *,
    patch_size: int = 32,
    patch_stride: int = 16,
) -> Split:
    """Split a grid and its radar picks into training and hold-out parts.

    Parameters
    ----------
    grid : xarray.Dataset
        The 150 m grid, dims ``("y", "x")``, ``y`` decreasing (EPSG:3413).
    picks : pandas.DataFrame
        A radar-picks table (``CONVENTIONS.md``), in file order for the
        line split; picks outside the grid are ignored.
    config : SplitConfig, optional
        Settings; a 4-fold line split, fold 0, when omitted.
    patch_size, patch_stride : int
        Patch side and step (cells) of the leaky split; unused otherwise.

    Returns
    -------
    Split

    Raises
    ------
    ConfigError
        A fold with no held-out pick (too few lines or blocks for the
        folds): fewer folds, or smaller blocks, give one.

    Warns
    -----
    SpatialLeakWarning
        For ``kind="random_patches_leaky"``.
    """
    config = SplitConfig() if config is None else config
    shape = (grid.sizes["y"], grid.sizes["x"])
    spacing = float(abs(grid["x"].values[1] - grid["x"].values[0]))

    # Picks inside the grid, with their cells.
    inside = picks_in_grid(picks.reset_index(drop=True), grid)
    position = inside.index.to_numpy(dtype="int64")
    row = inside["row"].to_numpy()
    col = inside["col"].to_numpy()
    pick_fold = np.full(len(picks), -1, dtype="int64")
    pick_line = np.full(len(picks), -1, dtype="int64")

    if config.kind == "lines":
        # Lines from the whole table (steps across the grid edge stay
        # real), then whole lines dealt to folds by pick count.
        lines = holdout_lines(
            picks,
            max_step_m=config.max_step_m,
            join_gap_m=config.join_gap_m,
            join_angle_deg=config.join_angle_deg,
        )
        pick_line[position] = lines[position]
        ids, inverse, counts = np.unique(
            lines[position], return_inverse=True, return_counts=True
        )
        folds = deal_to_folds(counts, config.n_folds, seed=config.seed)
        pick_fold[position] = folds[inverse]
        held = pick_fold[position] == config.fold
        log.debug("line split: %d lines, %d picks in the grid", ids.size, held.size)

        # Training picks: the others, less those within the buffer.
        train = ~held
        if config.buffer_m > 0 and held.any() and train.any():
            xy = inside[["x", "y"]].to_numpy()
            tree = cKDTree(xy[held])
            distance, _ = tree.query(xy[train], k=1)
            keep = distance > config.buffer_m
            train[np.flatnonzero(train)[~keep]] = False

        # Masks: held-out cells are no radar and no BedMachine target.
        heldout_mask = _cells(shape, row[held], col[held])
        train_mask = _cells(shape, row[train], col[train]) & ~heldout_mask
        train &= ~heldout_mask[row, col]
        bedmachine_mask = ~heldout_mask
        allowed = np.ones(shape, dtype=bool)
        origins = None

    elif config.kind == "blocks":
        # Blocks from the north-west corner, dealt to folds by pick count.
        block_id = block_ids(shape, config.block_size_m / spacing)
        n_blocks = int(block_id.max()) + 1
        pick_block = block_id[row, col]
        counts = np.bincount(pick_block, minlength=n_blocks)
        folds = deal_to_folds(counts, config.n_folds, seed=config.seed)
        pick_fold[position] = folds[pick_block]
        held = folds[pick_block] == config.fold

        # The held-out blocks and the buffer band around them.
        heldout_block = folds[block_id] == config.fold
        excluded = heldout_block
        if config.buffer_m > 0 and heldout_block.any():
            distance = ndimage.distance_transform_edt(~heldout_block) * spacing
            excluded = distance <= config.buffer_m

        # Training picks: outside blocks and buffer.
        train = ~excluded[row, col]
        heldout_mask = _cells(shape, row[held], col[held])
        train_mask = _cells(shape, row[train], col[train])
        bedmachine_mask = ~excluded
        allowed = ~excluded
        origins = None

    else:
        warnings.warn(
            "kind='random_patches_leaky' deals overlapping patches at random: "
            "validation patches share cells and radar picks with training "
            "patches, so its scores are optimistic. Use kind='lines' or "
            "'blocks' for an honest score",
            SpatialLeakWarning,
            stacklevel=2,
        )
        # Patches dealt at random; held out: picks in validation patches.
        all_origins = patch_origins(shape, size=patch_size, stride=patch_stride)
        rng = np.random.default_rng(config.seed)
        order = rng.permutation(len(all_origins))
        n_val = max(1, int(round(config.validation_fraction * len(all_origins))))
        validation, origins = all_origins[order[:n_val]], all_origins[order[n_val:]]
        covered_val = _covered(shape, validation, patch_size)
        covered_train = _covered(shape, origins, patch_size)
        held = covered_val[row, col]

        # Leak on purpose: picks in both kinds of patch stay training
        # targets, as in the released code.
        train = covered_train[row, col]
        heldout_mask = _cells(shape, row[held], col[held])
        train_mask = _cells(shape, row[train], col[train])
        bedmachine_mask = np.ones(shape, dtype=bool)
        allowed = np.ones(shape, dtype=bool)

    if not held.any():
        raise ConfigError(
            f"fold {config.fold} of the {config.kind} split holds out no radar pick "
            f"({len(position)} picks in the grid); use fewer folds"
            + (" or smaller blocks" if config.kind == "blocks" else "")
        )
    return Split(
        config=config,
        train_radar_mask=train_mask,
        heldout_radar_mask=heldout_mask,
        bedmachine_train_mask=bedmachine_mask,
        patch_allowed=allowed,
        train_picks=position[train],
        heldout_picks=position[held],
        pick_fold=pick_fold,
        pick_line=pick_line,
        train_patch_origins=origins,
    )


def block_ids(shape: tuple[int, int], block_cells: float) -> np.ndarray:
    """Number the square blocks of a grid from its north-west corner.

    Parameters
    ----------
    shape : tuple of int
        ``(H, W)`` cells of the grid.
    block_cells : float
        Side of a block in cells (rounded; at least 1).

    Returns
    -------
    numpy.ndarray
        int64, shape ``(H, W)``: the block of each cell, row by row of
        blocks; the blocks of the south and east edges may be cut short.
    """
    side = max(1, int(round(block_cells)))
    block_row = np.arange(shape[0]) // side
    block_col = np.arange(shape[1]) // side
    n_block_cols = int(block_col[-1]) + 1
    return (block_row[:, None] * n_block_cols + block_col[None, :]).astype("int64")


def _cells(shape: tuple[int, int], row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """Bool mask of the given cells."""
    mask = np.zeros(shape, dtype=bool)
    mask[row, col] = True
    return mask


def _covered(shape: tuple[int, int], origins: np.ndarray, size: int) -> np.ndarray:
    """Bool mask of the cells covered by square patches."""
    mask = np.zeros(shape, dtype=bool)
    for r, c in origins:
        mask[r : r + size, c : c + size] = True
    return mask
