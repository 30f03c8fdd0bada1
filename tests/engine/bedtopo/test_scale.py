"""Tests of large-area prediction on Dask workers, ``engine.bedtopo.scale``."""

from __future__ import annotations

import numpy as np
import pytest
import rioxarray  # noqa: F401  (registers the .rio accessor)
import torch
import xarray as xr

from engine.bedtopo.features import FeatureConfig
from engine.bedtopo.models import DeepTopoNet, DeepTopoNetConfig
from engine.bedtopo.predict import Z_90, predict_region
from engine.bedtopo.scale import (
    DatasetSource,
    ModelSpec,
    PredictionCancelled,
    SyntheticGridSource,
    TileReport,
    fit_scaler,
    predict_large,
    tile_layout,
)
from engine.bedtopo.targets import fine_coordinates
from engine.dask_local import local_cluster

distributed = pytest.importorskip("distributed")

#: Two narrow residual blocks: receptive radius 4 cells, quick on a CPU.
WIDTHS = (4, 8)

#: A 40 x 56 grid in cores of 16 cells: 3 x 4 = 12 tiles, several of them
#: clipped at the grid's south and east edges.
HEIGHT, WIDTH, TILE = 40, 56, 16

#: Float32 forward passes over windows of other sizes than the whole grid
#: sum the same products in another order: the bed (hundreds of metres)
#: then differs by round-off, measured about 3e-5 m; 1 mm allows for other
#: CPUs' kernels and is far below any bed signal.
ATOL_M = 1e-3


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of two one-thread worker processes on loopback."""
    cluster = local_cluster(2)
    with distributed.Client(cluster) as dask_client:
        yield dask_client
    cluster.close()


@pytest.fixture(scope="module")
def source():
    """A seeded synthetic 40 x 56 grid with BedMachine fields."""
    return SyntheticGridSource(HEIGHT, WIDTH, seed=3)


@pytest.fixture(scope="module")
def spec(source):
    """An untrained factor-3 DeepTopoNet whose head is not zero."""
    scaler = fit_scaler(source, config=FeatureConfig(include_bedmachine=True))
    torch.manual_seed(0)
    config = DeepTopoNetConfig(
        in_channels=len(scaler.channels),
        widths=WIDTHS,
        dropout=0.2,
        factor=3,
        zero_init_head=False,
    )
    return ModelSpec.from_model(DeepTopoNet(config), scaler)


@pytest.fixture(scope="module")
def whole_grid(source, spec):
    """predict_region over the whole grid in a single tile: the oracle."""
    grid = source.window(slice(0, HEIGHT), slice(0, WIDTH))
    return predict_region(
        spec.build(), grid, scaler=spec.scaler, factor=3, tile=WIDTH, overlap=0
    )


@pytest.fixture(scope="module")
def dask_result(client, source, spec, tmp_path_factory):
    """predict_large on the cluster, with its tile reports."""
    folder = tmp_path_factory.mktemp("dask")
    reports: list[TileReport] = []
    path = predict_large(
        source,
        spec,
        out_path=folder / "bed.nc",
        tile=TILE,
        client=client,
        tile_report=reports.append,
    )
    return path, reports


def test_tile_layout_covers_grid_once():
    """Cores tile the grid exactly once; windows add the halo, clipped."""
    tasks = tile_layout(HEIGHT, WIDTH, tile=TILE, halo=5)
    count = np.zeros((HEIGHT, WIDTH), dtype=int)
    for task in tasks:
        count[slice(*task.core_rows), slice(*task.core_cols)] += 1
    assert (count == 1).all()
    assert len(tasks) == 12
    assert tasks[0].window_rows == (0, TILE + 5)
    assert tasks[-1].window_cols == (48 - 5, WIDTH)


def test_dask_equals_whole_grid(dask_result, whole_grid):
    """The tiled map on two workers is the whole-grid prediction."""
    path, reports = dask_result
    with xr.open_dataset(path) as ds:
        bed = ds["bed"].to_numpy()
    assert bed.dtype == np.float32
    assert bed.shape == (3 * HEIGHT, 3 * WIDTH)
    np.testing.assert_allclose(bed, whole_grid["bed"].to_numpy(), atol=ATOL_M)

    # Every tile reported once, from worker processes.
    assert sorted(r.task.index for r in reports) == list(range(12))
    assert all(r.peak_rss_bytes > 0 and r.seconds > 0 for r in reports)


def test_output_is_cf_netcdf_on_the_fine_grid(dask_result, source):
    """EPSG:3413, fine cell centres, chunked float32, nothing left over."""
    path, _ = dask_result
    x_fine, y_fine = fine_coordinates(source.x, source.y, factor=3)
    with xr.open_dataset(path) as ds:
        assert ds.rio.crs.to_epsg() == 3413
        assert ds["bed"].attrs["grid_mapping"] == "spatial_ref"
        assert ds["bed"].attrs["units"] == "m"
        np.testing.assert_array_equal(ds["x"].to_numpy(), x_fine)
        np.testing.assert_array_equal(ds["y"].to_numpy(), y_fine)
        # Uncompressed by default (see predict_large's complevel), chunked.
        assert not ds["bed"].encoding.get("zlib", False)
        assert ds["bed"].encoding["chunksizes"] == (48, 48)
        assert ds.attrs["grid_spacing"] == 50.0
        assert "bed_std" not in ds

    # Only the final file in the folder: the temporary one was moved.
    assert [p.name for p in path.parent.iterdir()] == ["bed.nc"]


def test_serial_equals_dask(dask_result, source, spec, tmp_path):
    """client=None and n_workers=0 run in-process and give the same map."""
    path = predict_large(
        source,
        spec,
        out_path=tmp_path / "serial.nc",
        tile=TILE,
        n_workers=0,
        complevel=4,
    )
    with xr.open_dataset(path) as serial, xr.open_dataset(dask_result[0]) as tiled:
        # Same tiles, same kernels, other thread counts: round-off only.
        np.testing.assert_allclose(serial["bed"], tiled["bed"], atol=ATOL_M)
        # Compression, when asked for, changes the file, not the values.
        assert serial["bed"].encoding["zlib"]


def test_cancel_stops_early_and_leaves_no_file(client, source, spec, tmp_path):
    """A cancel after the first tile raises and writes nothing."""
    done: list[int] = []
    with pytest.raises(PredictionCancelled, match="cancelled after 1 of 12"):
        predict_large(
            source,
            spec,
            out_path=tmp_path / "bed.nc",
            tile=TILE,
            client=client,
            progress=lambda n, total: done.append(n),
            cancel=lambda: len(done) >= 1,
        )
    assert done == [1]
    assert list(tmp_path.iterdir()) == []

    # The cluster is still usable afterwards.
    assert client.submit(sum, [1, 2]).result() == 3


def test_dataset_source_from_netcdf_path(source, spec, whole_grid, tmp_path):
    """A grid file read lazily per window gives the same map."""
    grid_path = tmp_path / "grid.nc"
    source.window(slice(0, HEIGHT), slice(0, WIDTH)).to_netcdf(grid_path)
    path = predict_large(
        DatasetSource(grid_path),
        spec,
        out_path=tmp_path / "bed.nc",
        tile=TILE,
        n_workers=0,
    )
    with xr.open_dataset(path) as ds:
        np.testing.assert_allclose(ds["bed"], whole_grid["bed"], atol=ATOL_M)


def test_mc_dropout_writes_the_interval(source, spec, tmp_path):
    """With MC samples the std and the 90 % interval are written."""
    path = predict_large(
        source,
        spec,
        out_path=tmp_path / "bed.nc",
        tile=TILE,
        n_workers=0,
        mc_samples=3,
    )
    with xr.open_dataset(path) as ds:
        std = ds["bed_std"].to_numpy()
        assert np.isfinite(std).all() and (std > 0).any()
        # Both bounds are float32 near the bed (~500 m), whose spacing is
        # about 3e-5 m: their difference is exact to about 1e-4 m.
        width = (ds["bed_upper_90"] - ds["bed_lower_90"]).to_numpy()
        np.testing.assert_allclose(width, 2 * Z_90 * std, atol=1e-4)
