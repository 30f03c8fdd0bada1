"""Toy data sets and the small-CSV loader."""

from __future__ import annotations

import numpy as np
import pytest

from engine.backprop.datasets import (
    MAX_CSV_BYTES,
    MAX_CSV_FEATURES,
    MAX_CSV_ROWS,
    TOY_DATASETS,
    encode_targets,
    load_csv,
    make_toy,
    standardize,
)
from engine.backprop.errors import (
    BackpropError,
    CSVColumnError,
    CSVError,
    CSVSizeError,
    CSVValueError,
    TargetError,
)
from engine.data.errors import DataError


@pytest.mark.parametrize("name", TOY_DATASETS)
def test_toy_sets_are_deterministic_per_seed(name: str) -> None:
    first = make_toy(name, 60, 0.1, seed=11)
    second = make_toy(name, 60, 0.1, seed=11)
    other = make_toy(name, 60, 0.1, seed=12)
    np.testing.assert_array_equal(first.features, second.features)
    np.testing.assert_array_equal(first.labels, second.labels)
    assert not np.array_equal(first.features, other.features)


@pytest.mark.parametrize("name", TOY_DATASETS)
def test_toy_sets_have_two_balanced_classes(name: str) -> None:
    data = make_toy(name, 61, 0.05, seed=0)
    assert data.features.shape == (61, 2)
    assert data.features.dtype == np.float64
    assert sorted(np.bincount(data.labels)) == [30, 31]
    assert data.n_classes == 2 and data.n_features == 2
    # Shapes span about [-1.6, 1.6]; noise of 0.05 cannot reach 3.
    assert np.all(np.abs(data.features) < 3.0)


def test_toy_shapes_are_what_they_claim() -> None:
    # Circles: the inner class sits closer to the centre.
    circles = make_toy("circles", 200, 0.0, seed=1)
    radius = np.linalg.norm(circles.features, axis=1)
    assert radius[circles.labels == 1].max() < radius[circles.labels == 0].min()

    # XOR without noise: the class is whether the signs differ (away from
    # the axes, since centring shifts the cloud by a few hundredths).
    xor = make_toy("xor", 200, 0.0, seed=1)
    away = np.all(np.abs(xor.features) > 0.2, axis=1)
    differ = (xor.features[:, 0] > 0) != (xor.features[:, 1] > 0)
    assert away.sum() > 100
    np.testing.assert_array_equal(xor.labels[away], differ[away].astype(int))

    # Moons without noise: each class lies on a circle of radius 1, the
    # second one's centre shifted by (1, 0.5). Fit x^2 + y^2 + D x + E y + F
    # = 0 by least squares; exact points leave only rounding, so 1e-9.
    moons = make_toy("moons", 200, 0.0, seed=1)
    centres = []
    for k in (0, 1):
        x, y = moons.features[moons.labels == k].T
        design = np.column_stack([x, y, np.ones_like(x)])
        (d, e, f), *_ = np.linalg.lstsq(design, -(x**2 + y**2), rcond=None)
        centres.append(np.array([-d / 2, -e / 2]))
        assert np.sqrt(d**2 / 4 + e**2 / 4 - f) == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(centres[1] - centres[0], [1.0, 0.5], atol=1e-9)


def test_toy_errors() -> None:
    with pytest.raises(BackpropError, match="choose one of"):
        make_toy("swiss roll")
    with pytest.raises(BackpropError, match="4 or more"):
        make_toy("moons", 2)


GOOD = "x1,x2,label\n0.5,1.0,cat\n-1,2e-1,dog\n3,4,cat\n"


def test_load_csv_reads_features_and_classes() -> None:
    data = load_csv(GOOD.encode(), name="pets.csv")
    assert data.name == "pets.csv"
    np.testing.assert_array_equal(data.features, [[0.5, 1.0], [-1.0, 0.2], [3.0, 4.0]])
    np.testing.assert_array_equal(data.labels, [0, 1, 0])
    assert data.class_names == ("cat", "dog")
    assert data.feature_names == ("x1", "x2")


def test_load_csv_label_anywhere_numeric_classes_and_bom() -> None:
    text = "\ufefflabel,a\n10,1\n9,2\n\n10,3\n"
    data = load_csv(text.encode("utf-8"))
    # Numeric class names sort by value: 9 before 10.
    assert data.class_names == ("9", "10")
    np.testing.assert_array_equal(data.labels, [1, 0, 1])
    np.testing.assert_array_equal(data.features[:, 0], [1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [
        (b"", CSVSizeError, "the first line must name the columns"),
        (b"x1,label\n", CSVSizeError, "no data rows"),
        (b"x1,x2,class\n1,2,a\n", CSVColumnError, "no column named 'label'.*'class'"),
        (b"label\na\nb\n", CSVColumnError, "add at least one numeric feature"),
        (b"x;y;label\n1;2;a\n", CSVColumnError, "semicolons"),
        (b"x,x,label\n1,2,a\n", CSVColumnError, "more than once"),
        (b"x,y,label\n1,2,a\n3,b\n", CSVColumnError, "line 3 has 2 values"),
        (
            b"x,y,label\n1,2,a\n3,abc,b\n",
            CSVValueError,
            "line 3, column 'y'.*not a number",
        ),
        (b"x,y,label\n1,,a\n3,4,b\n", CSVValueError, "column 'y' is empty"),
        (b"x,y,label\n1,nan,a\n3,4,b\n", CSVValueError, "NaN or infinite"),
        (b"x,y,label\n1,2,a\n-inf,4,b\n", CSVValueError, "NaN or infinite"),
        (b"x,label\n1,a\n2,a\n", CSVValueError, "one class only"),
        (b"x,label\n1,a\n2,\n", CSVValueError, "empty 'label'"),
        (b"x,label\n1,a\n\xff\xfe,b\n", CSVValueError, "not UTF-8"),
    ],
)
def test_bad_csv_names_problem_and_fix(
    content: bytes, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        load_csv(content)


def test_csv_errors_are_value_and_data_errors() -> None:
    assert issubclass(CSVError, ValueError)
    assert issubclass(CSVError, DataError)
    assert issubclass(CSVError, BackpropError)


def test_csv_limits() -> None:
    too_big = b"x,label\n" + b"1.0000000000,a\n" * (MAX_CSV_BYTES // 10)
    with pytest.raises(CSVSizeError, match="MB limit"):
        load_csv(too_big)
    rows = "x,label\n" + "".join(f"{i},{i % 2}\n" for i in range(MAX_CSV_ROWS + 1))
    with pytest.raises(CSVSizeError, match=f"more than the {MAX_CSV_ROWS}"):
        load_csv(rows)
    wide = ",".join(f"f{i}" for i in range(MAX_CSV_FEATURES + 1)) + ",label\n"
    with pytest.raises(CSVColumnError, match=f"keep at most {MAX_CSV_FEATURES}"):
        load_csv(wide + ",".join("1" * (MAX_CSV_FEATURES + 1)) + ",a\n")
    many = "x,label\n" + "".join(f"{i},{i}\n" for i in range(20))
    with pytest.raises(CSVValueError, match="20 distinct values"):
        load_csv(many)
    # Exactly at the row limit is fine.
    ok = "x,label\n" + "".join(f"{i},{i % 2}\n" for i in range(MAX_CSV_ROWS))
    assert load_csv(ok).features.shape == (MAX_CSV_ROWS, 1)


def test_standardize(rng: np.random.Generator) -> None:
    features = np.column_stack([rng.normal(5.0, 3.0, 50), np.full(50, 2.0)])
    scaled, mean, scale = standardize(features)
    # Mean and spread of 50 float64 values: rounding of order 1e-15.
    np.testing.assert_allclose(scaled[:, 0].mean(), 0.0, atol=1e-12)
    np.testing.assert_allclose(scaled[:, 0].std(), 1.0, rtol=1e-12)
    assert scale[1] == 1.0 and np.all(scaled[:, 1] == 0.0)


def test_encode_targets() -> None:
    labels = np.array([0, 2, 1])
    np.testing.assert_array_equal(encode_targets(labels, 3, 3), np.eye(3)[[0, 2, 1]])
    binary = encode_targets(np.array([1, 0]), 1, 2)
    np.testing.assert_array_equal(binary, [[1.0], [0.0]])
    with pytest.raises(TargetError, match="give the last dense layer 3 outputs"):
        encode_targets(labels, 2, 3)
    with pytest.raises(TargetError, match="3 classes"):
        encode_targets(labels, 1, 3)


def test_bed_cells_balance_the_classes_and_standardise(helheim_grid_path):
    from engine.backprop.datasets import bed_cells
    from engine.data.grids import read_topo_hdf5

    grid = read_topo_hdf5(helheim_grid_path)
    data = bed_cells(grid, 60, seed=3)

    # Half the cells below sea level, half above; two standardised features.
    assert data.features.shape == (60, 2)
    assert np.bincount(data.labels).tolist() == [30, 30]
    # Standardised over the 60 drawn cells: exact up to float rounding.
    np.testing.assert_allclose(data.features.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(data.features.std(axis=0), 1.0, rtol=1e-12)

    # The same seed draws the same cells.
    again = bed_cells(grid, 60, seed=3)
    np.testing.assert_array_equal(data.features, again.features)


def test_bed_cells_refuse_a_grid_without_the_fields():
    import xarray as xr

    from engine.backprop.datasets import bed_cells
    from engine.backprop.errors import BackpropError

    grid = xr.Dataset({"surface_elevation": (("y", "x"), np.zeros((4, 4)))})
    with pytest.raises(BackpropError, match="lacks"):
        bed_cells(grid, 10)
