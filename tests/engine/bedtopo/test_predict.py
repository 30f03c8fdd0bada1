"""Tests of tiled prediction and the writers, ``engine.bedtopo.predict``."""

from __future__ import annotations

import numpy as np
import pytest
import rioxarray
import torch
import xarray as xr
from torch import nn

from engine.bedtopo.errors import ConfigError
from engine.bedtopo.features import FeatureConfig, make_features
from engine.bedtopo.models import (
    DeepTopoNet,
    DeepTopoNetConfig,
    PaperModel,
    PaperModelConfig,
)
from engine.bedtopo.predict import (
    Z_90,
    GridSource,
    TileSeamWarning,
    UncertaintyWarning,
    calibrate_sigma,
    predict_region,
    receptive_radius,
    scale_uncertainty,
    tile_weights,
    write_geotiff,
    write_netcdf,
)
from engine.data.twin import make_twin

#: Two narrow residual blocks: receptive radius 4 cells, quick on a CPU.
WIDTHS = (4, 8)


@pytest.fixture(scope="module")
def twin_grid():
    """A 32 x 40 twin (4.8 x 6 km) with BedMachine-like inputs."""
    return make_twin(seed=7, ny=32, nx=40, n_troughs=1, n_ridges=1).grid


@pytest.fixture(scope="module")
def features(twin_grid):
    """Z-scored features with BedMachine's bed and error (22 channels)."""
    return make_features(twin_grid, config=FeatureConfig(include_bedmachine=True))


def _deeptoponet(n_channels: int, *, dropout: float = 0.2, seed: int = 0) -> nn.Module:
    """An untrained factor-2 DeepTopoNet whose head is not zero."""
    torch.manual_seed(seed)
    config = DeepTopoNetConfig(
        in_channels=n_channels,
        widths=WIDTHS,
        dropout=dropout,
        factor=2,
        zero_init_head=False,
    )
    return DeepTopoNet(config).eval()


class _Constant(nn.Module):
    """A network with a 3x3 convolution whose output is always 123 m."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return 0.0 * self.conv(features) + 123.0


def test_receptive_radius_counts_3x3_convolutions():
    """Two blocks of two 3x3 convolutions: 4 cells; the 1x1 skips add 0."""
    # Factor 2, smooth: the interpolation adds one 150 m cell.
    assert receptive_radius(_deeptoponet(22)) == 5
    # The smooth subgrid's bilinear interpolation reaches one cell further.
    assert receptive_radius(DeepTopoNet(DeepTopoNetConfig(in_channels=22))) == 11
    free = DeepTopoNetConfig(in_channels=22, subgrid="free")
    assert receptive_radius(DeepTopoNet(free)) == 10


def test_tile_weights_are_a_partition_of_unity():
    """Two tiles overlapping by 2 margin + ramp cells: weights sum to 1."""
    margin, ramp, tile = 2, 4, 12
    left = tile_weights((1, tile), margin=margin, ramp=ramp, edges=(0, 0, 0, 1))[0]
    right = tile_weights((1, tile), margin=margin, ramp=ramp, edges=(0, 0, 1, 0))[0]
    overlap = 2 * margin + ramp
    total = np.zeros(2 * tile - overlap)
    total[:tile] += left
    total[tile - overlap :] += right

    # cos(a) + cos(pi - a) in float64: round-off only.
    np.testing.assert_allclose(total, 1.0, atol=1e-12)
    assert left[-margin:].max() == 0.0 and right[:margin].max() == 0.0


def test_tiled_prediction_equals_whole_grid(twin_grid, features):
    """Tiles of 16 cells, overlap 11 >= 2 x 5 + 1, give the one-tile map."""
    model = _deeptoponet(len(features.channels))

    whole = predict_region(model, twin_grid, scaler=features.scaler, tile=64)
    tiled = predict_region(
        model, twin_grid, scaler=features.scaler, tile=16, overlap=11, batch_size=3
    )
    with torch.no_grad():
        direct = model(
            torch.as_tensor(features.values)[None],
            torch.as_tensor(twin_grid["bed_bedmachine"].values)[None, None],
        )[0, 0].numpy()

    # The whole grid is one tile: the same float32 network call as direct.
    np.testing.assert_allclose(whole["bed"].values, direct, rtol=0, atol=1e-4)
    # Blended tiles differ from it by float32 round-off of beds of a few
    # hundred metres (about 3e-5 m per operation) and of the weights' sum.
    np.testing.assert_allclose(tiled["bed"].values, whole["bed"].values, atol=1e-3)


def test_array_features_and_paper_model(twin_grid, features):
    """Arrays in, a 150 m PaperModel: tiled equals the direct call."""
    surface = [i for i, c in enumerate(features.channels) if "bedmachine" not in c]
    values = features.values[surface]
    torch.manual_seed(1)
    model = PaperModel(
        PaperModelConfig(
            in_channels=len(surface), widths=WIDTHS, target_mean=-100.0, target_std=50.0
        )
    ).eval()

    ds = predict_region(
        model,
        values,
        x=twin_grid["x"].values,
        y=twin_grid["y"].values,
        tile=12,
        overlap=9,
    )
    with torch.no_grad():
        direct = model(torch.as_tensor(values)[None])[0, 0].numpy()

    # Float32 round-off on outputs of about 100 m.
    np.testing.assert_allclose(ds["bed"].values, direct, atol=1e-3)
    assert ds.attrs["factor"] == 1 and ds.attrs["grid_spacing"] == 150.0


def test_grid_source_builds_the_whole_grid_features(twin_grid, features):
    """A window with its halo gives exactly the cells of make_features."""
    source = GridSource(twin_grid, scaler=features.scaler)

    window, bed, filled = source.read(slice(5, 17), slice(0, 9))

    # Same float64 arithmetic on the same cells, then float32.
    np.testing.assert_array_equal(window, features.values[:, 5:17, 0:9])
    np.testing.assert_array_equal(bed, twin_grid["bed_bedmachine"].values[5:17, 0:9])
    assert not filled


def test_constant_model_gives_a_constant_map_without_seams():
    """Many overlapping tiles of a constant network: exactly 123 m."""
    x = 75.0 + 150.0 * np.arange(37)
    y = -75.0 - 150.0 * np.arange(30)
    values = np.random.default_rng(0).standard_normal((3, 30, 37)).astype("float32")

    ds = predict_region(_Constant(), values, x=x, y=y, tile=8, overlap=4)

    # Each cell is a weighted mean of equal values: 123 to round-off.
    np.testing.assert_allclose(ds["bed"].values, 123.0, rtol=1e-6)


def test_fine_grid_coordinates_and_crs(twin_grid, features):
    """Factor 2: 75 m cell centres inside the 150 m cells, y decreasing."""
    model = _deeptoponet(len(features.channels))

    ds = predict_region(model, twin_grid, scaler=features.scaler, tile=32, overlap=11)

    x0, y0 = float(twin_grid["x"][0]), float(twin_grid["y"][0])
    assert ds.sizes == {"y": 64, "x": 80}
    # Multiples of 37.5 m on coordinates of 1e5-1e6 m: float64 round-off.
    np.testing.assert_allclose(ds["x"].values[:2], [x0 - 37.5, x0 + 37.5])
    np.testing.assert_allclose(ds["y"].values[:2], [y0 + 37.5, y0 - 37.5])
    assert (np.diff(ds["y"].values) < 0).all()
    assert ds.rio.crs.to_epsg() == 3413
    np.testing.assert_allclose(ds.rio.bounds(), twin_grid.rio.bounds())
    assert ds.attrs["grid_spacing"] == 75.0
    assert ds["bed"].attrs["units"] == "m"


def test_mc_dropout_spread(twin_grid, features):
    """Dropout on: std > 0 and an interval around the mean, reproducibly."""
    model = _deeptoponet(len(features.channels))
    flags = {name: m.training for name, m in model.named_modules()}

    ds = predict_region(
        model, twin_grid, scaler=features.scaler, tile=20, overlap=11, mc_samples=4
    )
    again = predict_region(
        model, twin_grid, scaler=features.scaler, tile=20, overlap=11, mc_samples=4
    )

    std = ds["bed_std"].values
    assert np.isfinite(std).all() and std.mean() > 0
    np.testing.assert_allclose(
        ds["bed_upper_90"].values - ds["bed"].values, Z_90 * std, atol=1e-3
    )
    np.testing.assert_array_equal(ds["bed"].values, again["bed"].values)
    assert ds.attrs["uncertainty"] == "mc_dropout"
    assert {name: m.training for name, m in model.named_modules()} == flags


def test_mc_dropout_without_dropout_has_zero_std(twin_grid, features):
    """Dropout 0: identical passes, std exactly 0, and a warning."""
    model = _deeptoponet(len(features.channels), dropout=0.0)

    with pytest.warns(UncertaintyWarning):
        ds = predict_region(
            model, twin_grid, scaler=features.scaler, tile=20, overlap=11, mc_samples=3
        )

    assert (ds["bed_std"].values == 0).all()


def test_deterministic_map_has_nan_uncertainty(twin_grid, features):
    """A single model without MC samples: std and interval are NaN."""
    model = _deeptoponet(len(features.channels))

    ds = predict_region(model, twin_grid, scaler=features.scaler, tile=64)

    assert np.isnan(ds["bed_std"].values).all()
    assert ds.attrs["uncertainty"] == "none"


def test_ensemble_spread(twin_grid, features):
    """Two members from two seeds: their spread is the std."""
    members = [_deeptoponet(len(features.channels), seed=s) for s in (0, 1)]

    ds = predict_region(members, twin_grid, scaler=features.scaler, tile=64)
    one = [
        predict_region(m, twin_grid, scaler=features.scaler, tile=64) for m in members
    ]

    a, b = (d["bed"].values.astype("float64") for d in one)
    # Mean and population std of two values; float32 storage round-off.
    np.testing.assert_allclose(ds["bed"].values, (a + b) / 2, atol=1e-3)
    np.testing.assert_allclose(ds["bed_std"].values, np.abs(a - b) / 2, atol=1e-3)
    assert ds.attrs["uncertainty"] == "ensemble"


def test_small_overlap_warns_and_bad_settings_raise(twin_grid, features):
    """An overlap below 2 R + 1 warns; impossible settings raise."""
    model = _deeptoponet(len(features.channels))

    with pytest.warns(TileSeamWarning):
        predict_region(model, twin_grid, scaler=features.scaler, tile=16, overlap=4)
    with pytest.raises(ConfigError):
        predict_region(model, twin_grid, scaler=features.scaler, tile=16, overlap=16)
    with pytest.raises(ConfigError):
        predict_region(model, twin_grid, scaler=features.scaler, mc_samples=1)
    with pytest.raises(ConfigError):
        predict_region(model, twin_grid, scaler=features.scaler, factor=3)


def test_calibrate_sigma():
    """Residuals of twice the std: a factor of 2 by either method."""
    std = np.array([1.0, 2.0, 4.0, 0.5] * 25)
    signs = np.tile([1.0, -1.0], 50)

    residuals = 2.0 * std * signs

    # |r| / std is exactly 2 everywhere: exact up to round-off.
    assert calibrate_sigma(std, residuals) == pytest.approx(2.0)
    assert calibrate_sigma(std, residuals, method="coverage") == pytest.approx(
        2.0 / Z_90
    )
    with pytest.raises(ConfigError):
        calibrate_sigma(np.zeros(3), np.ones(3))


def test_scale_uncertainty_widens_the_interval(twin_grid, features):
    """A factor of 2 doubles the std and the interval's half-width."""
    model = _deeptoponet(len(features.channels))
    ds = predict_region(
        model, twin_grid, scaler=features.scaler, tile=64, mc_samples=3
    )

    scaled = scale_uncertainty(ds, 2.0)

    # float32 products: relative round-off.
    np.testing.assert_allclose(scaled["bed_std"], 2 * ds["bed_std"], rtol=1e-6)
    np.testing.assert_allclose(
        scaled["bed_upper_90"] - scaled["bed"], 2 * Z_90 * ds["bed_std"], atol=1e-3
    )
    assert scaled.attrs["sigma_calibration"] == 2.0


@pytest.fixture(scope="module")
def prediction(twin_grid, features):
    """An MC-dropout prediction to write."""
    model = _deeptoponet(len(features.channels))
    return predict_region(model, twin_grid, scaler=features.scaler, mc_samples=2)


def test_netcdf_round_trip(prediction, tmp_path):
    """CF NetCDF: CRS EPSG:3413, units, float32, values and no temp file."""
    path = write_netcdf(prediction, tmp_path / "bed.nc")

    with xr.open_dataset(path, decode_coords="all") as back:
        assert back.rio.crs.to_epsg() == 3413
        assert back["bed"].attrs["units"] == "m"
        assert back["bed"].attrs["long_name"] == "predicted bed elevation"
        assert back["bed"].dtype == np.float32
        assert back["bed"].encoding["zlib"]
        np.testing.assert_array_equal(back["bed"].values, prediction["bed"].values)
        np.testing.assert_array_equal(back["y"].values, prediction["y"].values)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bed.nc"]


def test_geotiff_has_the_grid_transform(prediction, tmp_path):
    """GeoTIFF: the 75 m transform from the north-west corner, EPSG:3413."""
    path = write_geotiff(prediction, tmp_path / "bed.tif", variable="bed_std")

    with rioxarray.open_rasterio(path) as back:
        assert back.rio.crs.to_epsg() == 3413
        assert back.rio.transform() == prediction.rio.transform()
        assert back.rio.transform().a == 75.0
        np.testing.assert_array_equal(back.values[0], prediction["bed_std"].values)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bed.tif"]


def test_failed_writes_keep_the_old_file(prediction, tmp_path, monkeypatch):
    """A write that fails midway leaves the old file and no temp file."""
    nc, tif = tmp_path / "bed.nc", tmp_path / "bed.tif"
    nc.write_bytes(b"old netcdf")
    tif.write_bytes(b"old tiff")

    def broken(self, path, *args, **kwargs):
        with open(path, "wb") as handle:
            handle.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", broken)
    monkeypatch.setattr(rioxarray.raster_array.RasterArray, "to_raster", broken)
    with pytest.raises(OSError):
        write_netcdf(prediction, nc)
    with pytest.raises(OSError):
        write_geotiff(prediction, tif)

    assert nc.read_bytes() == b"old netcdf"
    assert tif.read_bytes() == b"old tiff"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bed.nc", "bed.tif"]


def test_prediction_scored_at_held_out_radar(prediction, twin_grid):
    """A fine MC-dropout map: point scores with coverage, grid at 150 m."""
    from engine.bedtopo.evaluate import evaluate_bed
    from engine.bedtopo.targets import pick_beds

    twin = make_twin(seed=7, ny=32, nx=40, n_troughs=1, n_ridges=1)
    easting, northing, bed = pick_beds(twin.radar, twin_grid)

    scores = evaluate_bed(
        prediction, twin_grid, test_x=easting, test_y=northing, test_bed=bed
    )

    assert scores["points"]["n"] == easting.size
    assert 0.0 <= scores["points"]["coverage_90"] <= 1.0
    assert scores["grid"]["n"] == 32 * 40
    assert np.isfinite(scores["twin"]["rmse_true"])
