"""Toy two-dimensional data sets, a small-CSV loader, and target encoding.

The toy sets are drawn with numpy from a seed, so the same seed always
gives the same points. The CSV loader accepts a small file (at most
``MAX_CSV_BYTES`` bytes and ``MAX_CSV_ROWS`` data rows) with numeric feature
columns and one class column, and raises a ``CSVError`` subclass whose
message names the problem and the fix.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass

import numpy as np
import xarray as xr

from engine.backprop.errors import (
    BackpropError,
    CSVColumnError,
    CSVSizeError,
    CSVValueError,
    TargetError,
)

#: Names of the toy data sets.
TOY_DATASETS: tuple[str, ...] = ("moons", "circles", "spirals", "xor")

#: Largest CSV accepted, in bytes (1 MB).
MAX_CSV_BYTES: int = 1_000_000

#: Largest number of data rows accepted in a CSV.
MAX_CSV_ROWS: int = 5000

#: Largest number of feature columns accepted in a CSV.
MAX_CSV_FEATURES: int = 16

#: Largest number of classes accepted in a CSV.
MAX_CSV_CLASSES: int = 10

#: Default name of the class column.
LABEL_COLUMN: str = "label"


@dataclass(frozen=True)
class Dataset:
    """Feature rows with a class per row.

    Attributes
    ----------
    name : str
        Where it came from, e.g. ``"moons"`` or the file name.
    features : numpy.ndarray
        Shape ``(N, d)``, float64.
    labels : numpy.ndarray
        Shape ``(N,)``, int64 in ``0 .. K - 1``.
    feature_names : tuple of str
        ``d`` column names.
    class_names : tuple of str
        ``K`` class names; class ``k`` is ``class_names[k]``.
    """

    name: str
    features: np.ndarray
    labels: np.ndarray
    feature_names: tuple[str, ...]
    class_names: tuple[str, ...]

    @property
    def n_classes(self) -> int:
        """Number of classes ``K``."""
        return len(self.class_names)

    @property
    def n_features(self) -> int:
        """Number of features ``d``."""
        return int(self.features.shape[1])


def _split(n_points: int) -> tuple[int, int]:
    """Points of class 0 and class 1 for ``n_points`` in all."""
    return n_points // 2, n_points - n_points // 2


def _finish(
    name: str, parts: list[np.ndarray], noise: float, rng: np.random.Generator
) -> Dataset:
    """Stack class parts, add Gaussian noise, centre, and shuffle."""
    # Stack the classes and label them by part
    features = np.vstack(parts)
    labels = np.concatenate(
        [np.full(len(part), k, dtype=np.int64) for k, part in enumerate(parts)]
    )

    # Noise, then centre the cloud on the origin
    features = features + rng.normal(0.0, noise, size=features.shape)
    features = features - features.mean(axis=0)

    # Shuffle the rows
    order = rng.permutation(len(features))
    return Dataset(
        name=name,
        features=features[order],
        labels=labels[order],
        feature_names=("x1", "x2"),
        class_names=tuple(str(k) for k in range(len(parts))),
    )


def make_toy(
    name: str, n_points: int = 200, noise: float = 0.1, seed: int = 0
) -> Dataset:
    """Draw one of the toy 2-D data sets, two classes.

    Parameters
    ----------
    name : str
        ``"moons"`` (two interleaved half circles), ``"circles"`` (a ring
        around a disc), ``"spirals"`` (two interleaved spiral arms) or
        ``"xor"`` (four quadrants, opposite ones sharing a class).
    n_points : int
        Number of points, 4 or more, split evenly between the classes.
    noise : float
        Standard deviation of the Gaussian noise added to the coordinates.
    seed : int
        Seed; the same seed gives the same points.

    Returns
    -------
    Dataset
        ``features`` of shape ``(n_points, 2)``, roughly within [-2, 2].
    """
    # Check the arguments
    if name not in TOY_DATASETS:
        raise BackpropError(
            f"unknown toy data set {name!r}; choose one of " + ", ".join(TOY_DATASETS)
        )
    if n_points < 4:
        raise BackpropError(f"n_points is {n_points}; ask for 4 or more points")
    if noise < 0:
        raise BackpropError(f"noise is {noise}; give a standard deviation of 0 or more")
    rng = np.random.default_rng(seed)
    n0, n1 = _split(n_points)

    # Moons: upper half circle, and a lower one shifted right and down
    if name == "moons":
        t0 = rng.uniform(0.0, np.pi, n0)
        t1 = rng.uniform(0.0, np.pi, n1)
        upper = np.column_stack([np.cos(t0), np.sin(t0)])
        lower = np.column_stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)])
        return _finish(name, [upper, lower], noise, rng)

    # Circles: a ring of radius 1 around a ring of radius 0.4
    if name == "circles":
        t0 = rng.uniform(0.0, 2 * np.pi, n0)
        t1 = rng.uniform(0.0, 2 * np.pi, n1)
        outer = np.column_stack([np.cos(t0), np.sin(t0)])
        inner = 0.4 * np.column_stack([np.cos(t1), np.sin(t1)])
        return _finish(name, [outer, inner], noise, rng)

    # Spirals: radius grows with the angle; the second arm is turned by pi
    if name == "spirals":
        arms = []
        for count, turn in ((n0, 0.0), (n1, np.pi)):
            t = np.sqrt(rng.uniform(0.0, 1.0, count)) * 3.0 * np.pi
            radius = 1.6 * t / (3.0 * np.pi)
            direction = np.column_stack([np.cos(t + turn), np.sin(t + turn)])
            arms.append(radius[:, None] * direction)
        return _finish(name, arms, noise, rng)

    # XOR: class 0 where both signs agree, class 1 where they differ, with
    # a gap of 0.1 along the axes
    parts = []
    for count, flip in ((n0, 1.0), (n1, -1.0)):
        size = rng.uniform(0.1, 1.1, size=(count, 2))
        sign = rng.choice([-1.0, 1.0], size=count)
        parts.append(size * np.column_stack([sign, flip * sign]))
    return _finish(name, parts, noise, rng)


def _parse_number(text: str, column: str, line: int) -> float:
    """A finite float from a CSV cell, or a ``CSVValueError``."""
    # Empty cells and text
    cell = text.strip()
    if not cell:
        raise CSVValueError(
            f"line {line}, column {column!r} is empty; fill in a number or delete "
            "the row"
        )
    try:
        value = float(cell)
    except ValueError:
        raise CSVValueError(
            f"line {line}, column {column!r} holds {cell[:30]!r}, which is not a "
            "number; feature columns must hold numbers only (with '.' as the "
            "decimal point), so remove the text or move it to the label column"
        ) from None

    # NaN and infinity parse as floats but cannot be trained on
    if not math.isfinite(value):
        raise CSVValueError(
            f"line {line}, column {column!r} holds {cell!r} (NaN or infinite); "
            "delete the row or replace the value by a finite number"
        )
    return value


def _decode(data: bytes | str) -> str:
    """CSV text from bytes or text, with the size checked."""
    # Text or bytes only; then the size limit, in bytes
    if not isinstance(data, (str, bytes, bytearray, memoryview)):
        raise CSVValueError(
            f"expected the file's content as text or bytes, got {type(data).__name__}; "
            "upload a CSV file"
        )
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(raw) > MAX_CSV_BYTES:
        raise CSVSizeError(
            f"the file is {len(raw) / 1e6:.2f} MB, over the {MAX_CSV_BYTES / 1e6:g} MB "
            f"limit; upload at most {MAX_CSV_ROWS} rows, for example a random sample"
        )

    # UTF-8 (a byte-order mark is dropped)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise CSVValueError(
            "the file is not UTF-8 text; save it as 'CSV UTF-8 (comma delimited)'"
        ) from None


def _short(name: str, limit: int = 40) -> str:
    """A column name as a message may quote it: cut to ``limit`` characters."""
    return repr(name if len(name) <= limit else name[:limit] + "...")


def _header(rows: list[list[str]], label_column: str) -> tuple[list[str], int]:
    """Column names and the label column's position, checked."""
    # A header with distinct names
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise CSVSizeError(
            "the file is empty; the first line must name the columns, e.g. "
            f"'x1,x2,{label_column}', and each later line hold one example"
        )
    header = [cell.strip() for cell in rows[0]]
    if len(header) == 1 and ";" in header[0]:
        raise CSVColumnError(
            "the header has a single column with ';' in it, so the file seems to "
            "use semicolons; save it with commas as separators"
        )
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise CSVColumnError(
            f"column name(s) {', '.join(map(_short, duplicates[:10]))} appear more than "
            "once; give every column its own name"
        )

    # The label column and at least one feature column
    if label_column not in header:
        found = ", ".join(_short(name) for name in header[:10])
        raise CSVColumnError(
            f"no column named {label_column!r} (found {found}); name the column "
            f"holding the classes {label_column!r}"
        )
    features = len(header) - 1
    if features < 1:
        raise CSVColumnError(
            f"the file has only the {label_column!r} column; add at least one "
            "numeric feature column"
        )
    if features > MAX_CSV_FEATURES:
        raise CSVColumnError(
            f"the file has {features} feature columns, more than the "
            f"{MAX_CSV_FEATURES} allowed; keep at most {MAX_CSV_FEATURES}"
        )
    return header, header.index(label_column)


def load_csv(
    data: bytes | str, name: str = "upload", label_column: str = LABEL_COLUMN
) -> Dataset:
    """Read a small CSV of numeric features and one class column.

    The first line names the columns. One column, ``label_column``, holds
    the class of each row (any text or numbers; 2 to ``MAX_CSV_CLASSES``
    distinct values, numbered in sorted order); every other column is a
    numeric feature. Limits: ``MAX_CSV_BYTES`` (1 MB), ``MAX_CSV_ROWS``
    (5000) data rows, ``MAX_CSV_FEATURES`` (16) feature columns.

    Parameters
    ----------
    data : bytes or str
        The file's content (bytes, UTF-8) or its text.
    name : str
        Name to give the data set, such as the file name.
    label_column : str
        Name of the class column.

    Returns
    -------
    Dataset
        ``features`` of shape ``(N, d)``, ``labels`` of shape ``(N,)``.

    Raises
    ------
    CSVSizeError
        Too large, too many rows, empty, or no data rows.
    CSVColumnError
        No label column, no or too many features, ragged rows, wrong
        separator, duplicate names.
    CSVValueError
        Text, empty cells, NaN or infinity in a feature column; an empty
        label; a single class or too many classes; not UTF-8.
    """
    # Text and rows, blank lines skipped
    text = _decode(data)
    rows = [row for row in csv.reader(io.StringIO(text)) if any(c.strip() for c in row)]
    header, label_at = _header(rows, label_column)
    body = rows[1:]

    # Row count
    if not body:
        raise CSVSizeError(
            "the file has a header but no data rows; add one line per example below it"
        )
    if len(body) > MAX_CSV_ROWS:
        raise CSVSizeError(
            f"the file has {len(body)} data rows, more than the {MAX_CSV_ROWS} "
            f"allowed; keep at most {MAX_CSV_ROWS}, for example a random sample"
        )

    # Every row as wide as the header
    for number, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise CSVColumnError(
                f"line {number} has {len(row)} values but the header names "
                f"{len(header)} columns; give every row one value per column"
            )

    # Numbers in the feature columns
    feature_at = [i for i in range(len(header)) if i != label_at]
    features = np.array(
        [
            [_parse_number(row[i], header[i], number) for i in feature_at]
            for number, row in enumerate(body, start=2)
        ],
        dtype=np.float64,
    )

    # Labels: non-empty, 2 .. MAX_CSV_CLASSES distinct values
    raw_labels = [row[label_at].strip() for row in body]
    for number, value in enumerate(raw_labels, start=2):
        if not value:
            raise CSVValueError(
                f"line {number} has an empty {label_column!r}; give every row a "
                "class or delete the row"
            )
    classes = _sorted_classes(set(raw_labels))
    if len(classes) < 2:
        raise CSVValueError(
            f"the {label_column!r} column holds one class only ({classes[0]!r}); a "
            "classifier needs rows of at least 2 classes"
        )
    if len(classes) > MAX_CSV_CLASSES:
        raise CSVValueError(
            f"the {label_column!r} column holds {len(classes)} distinct values, more "
            f"than the {MAX_CSV_CLASSES} classes allowed; it should hold classes, "
            "not a measured quantity"
        )
    index = {value: k for k, value in enumerate(classes)}
    labels = np.array([index[value] for value in raw_labels], dtype=np.int64)
    return Dataset(
        name=name,
        features=features,
        labels=labels,
        feature_names=tuple(header[i] for i in feature_at),
        class_names=tuple(classes),
    )


def _sorted_classes(values: set[str]) -> list[str]:
    """Class names sorted numerically when all are numbers, else as text."""
    # Numbers sort by value, so that '10' comes after '9'
    try:
        return sorted(values, key=float)
    except ValueError:
        return sorted(values)


def standardize(features: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Scale each column to mean 0 and standard deviation 1.

    Parameters
    ----------
    features : numpy.ndarray
        Shape ``(N, d)``.

    Returns
    -------
    scaled : numpy.ndarray
        Shape ``(N, d)``.
    mean, scale : numpy.ndarray
        Shape ``(d,)``; constant columns get scale 1.
    """
    # Column statistics; constant columns are only shifted
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    return (features - mean) / scale, mean, scale


def encode_targets(labels: np.ndarray, output_dim: int, n_classes: int) -> np.ndarray:
    """Targets for a network with ``output_dim`` outputs.

    Parameters
    ----------
    labels : numpy.ndarray
        Shape ``(N,)``, integers in ``0 .. n_classes - 1``.
    output_dim : int
        1 (two classes, target 0 or 1) or ``n_classes`` (one-hot rows).
    n_classes : int
        Number of classes ``K``.

    Returns
    -------
    numpy.ndarray
        Shape ``(N, output_dim)``, float64.
    """
    # One output: binary targets
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if output_dim == 1:
        if n_classes != 2:
            raise TargetError(
                f"the network has one output but the data has {n_classes} classes; "
                f"give the last dense layer {n_classes} outputs"
            )
        return labels[:, None].astype(np.float64)

    # Several outputs: one-hot
    if output_dim != n_classes:
        raise TargetError(
            f"the network has {output_dim} outputs but the data has {n_classes} "
            f"classes; give the last dense layer {n_classes} outputs"
        )
    return np.eye(n_classes)[labels]


def bed_cells(grid: xr.Dataset, n_points: int = 120, seed: int = 0) -> Dataset:
    """A few cells of a bed-topography grid: is the bed below sea level?

    Two features per cell, the surface elevation (m) and the surface speed
    (m a-1, from the two velocity components), and two classes from the
    BedMachine bed: ``below sea level`` (bed < 0 m) and ``above``. Fast ice
    over a deep bed is the pattern a small network can learn here. The
    features are standardised to mean 0 and deviation 1.

    Parameters
    ----------
    grid : xarray.Dataset
        A grid of ``engine.data`` (dims ``("y", "x")``, EPSG:3413) with
        ``surface_elevation``, ``surface_velocity_x``,
        ``surface_velocity_y`` and ``bed_bedmachine``.
    n_points : int
        Number of cells drawn, 4 or more, half from each class where the
        grid has enough of both.
    seed : int
        Seed of the draw.

    Returns
    -------
    Dataset
        ``features`` of shape ``(n_points, 2)``.
    """
    # Check the grid and the count
    needed = ["surface_elevation", "surface_velocity_x", "surface_velocity_y"]
    needed.append("bed_bedmachine")
    missing = [name for name in needed if name not in grid]
    if missing:
        raise BackpropError(
            f"the grid lacks {missing}; use a bed-topography grid with surface "
            "elevation, velocity and the BedMachine bed"
        )
    if n_points < 4:
        raise BackpropError(f"n_points is {n_points}; ask for 4 or more points")

    # Features and classes of every cell with finite values
    elevation = grid["surface_elevation"].to_numpy().ravel().astype("float64")
    speed = np.hypot(
        grid["surface_velocity_x"].to_numpy().ravel(),
        grid["surface_velocity_y"].to_numpy().ravel(),
    ).astype("float64")
    below = grid["bed_bedmachine"].to_numpy().ravel() < 0
    ok = np.isfinite(elevation) & np.isfinite(speed)

    # Draw half the cells from each class (as far as each has cells)
    rng = np.random.default_rng(seed)
    pools = [np.flatnonzero(ok & below), np.flatnonzero(ok & ~below)]
    wanted = [n_points // 2, n_points - n_points // 2]
    chosen = [
        rng.choice(pool, size=min(count, pool.size), replace=False)
        for pool, count in zip(pools, wanted, strict=True)
    ]
    cells = np.concatenate(chosen)
    if min(len(c) for c in chosen) == 0:
        raise BackpropError(
            "the grid's cells all lie on one side of sea level; pick a region "
            "with bed both below and above 0 m"
        )
    labels = np.concatenate([np.full(len(c), k) for k, c in enumerate(chosen)])

    # Standardise, shuffle
    features, _, _ = standardize(np.column_stack([elevation[cells], speed[cells]]))
    order = rng.permutation(len(cells))
    return Dataset(
        name="bed-topography cells",
        features=features[order],
        labels=labels[order].astype("int64"),
        feature_names=("surface elevation (z)", "surface speed (z)"),
        class_names=("bed below sea level", "bed above sea level"),
    )
