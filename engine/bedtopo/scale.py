"""Bed prediction over very large areas, tile by tile on Dask workers.

:func:`predict_large` runs a trained network over an area of any size, up
to all of Greenland (18346 x 10218 cells of 150 m, 55038 x 30654 cells of
50 m at factor 3), and writes the fine-grid bed into one chunked NetCDF
file without ever holding the whole map in memory:

- **Tiles.** The 150 m input grid is cut into square *cores* of ``tile x
  tile`` cells (the last row and column of cores are smaller). Each core
  is predicted from a *window*: the core plus ``R + 1`` cells on every
  side, clipped to the grid, with ``R`` the network's receptive radius
  (:func:`engine.bedtopo.predict.receptive_radius`, 10 cells for five
  residual blocks) and one more cell for the central-difference gradients
  of the features. No output cell of a core then feels the window's zero
  padding or a one-sided gradient, so the cores need no blending and the
  mosaic equals the whole-grid prediction up to float round-off.
- **Workers.** Each core is one Dask task. The model (its state dict,
  config and feature scaler, a :class:`ModelSpec`) and the grid source are
  scattered to every worker once; a task carries only the window indices.
  The worker reads the window's fields from the source, builds the
  features itself (:class:`engine.bedtopo.predict.GridSource`), runs
  :func:`engine.bedtopo.predict.predict_region` on the window with torch
  limited to one thread, and returns the core's fine cells. Memory per
  worker is one window, whatever the area.
- **Writing.** The client creates the NetCDF file at its full size first
  (CF, EPSG:3413 grid mapping, float32, zlib, chunks that divide a core's
  fine size so that every HDF5 chunk is written once), then writes each
  core into its slice as results arrive, with a bounded number of tasks
  in flight. The file is written under a temporary name in the target's
  folder and moved into place with ``os.replace`` when complete: a crash or
  a cancel never leaves a half-written file under the final name.

Without a cluster (``client=None``, ``scheduler_address=None`` and
``n_workers=0``) the same tasks run one after the other in the calling
process.

Grid sources (:class:`WindowSource`): :class:`DatasetSource` for a grid in
the conventions of :mod:`engine.data` (a NetCDF path, opened lazily by
each worker, or an xarray Dataset), and :class:`SyntheticGridSource`, a
cheap procedural grid of any size for benchmarks and tests.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import resource
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from os import PathLike
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import netCDF4
import numpy as np
import psutil
import rioxarray  # noqa: F401  (registers the .rio accessor)
import torch
import xarray as xr
from torch import nn

from engine.bedtopo.errors import ConfigError, FeatureError, FilledFeatureWarning
from engine.bedtopo.features import (
    BEDMACHINE_FIELDS,
    SURFACE_FIELDS,
    FeatureConfig,
    FeatureScaler,
    raw_features,
)
from engine.bedtopo.models import (
    DeepTopoNet,
    DeepTopoNetConfig,
    PaperModel,
    PaperModelConfig,
)
from engine.bedtopo.predict import (
    OUTPUT_ATTRS,
    Z_90,
    GridSource,
    predict_region,
    receptive_radius,
)
from engine.bedtopo.targets import fine_coordinates
from engine.data.grids import CRS

__all__ = [
    "PredictionCancelled",
    "ModelSpec",
    "WindowSource",
    "DatasetSource",
    "SyntheticGridSource",
    "TileTask",
    "TileReport",
    "fit_scaler",
    "tile_layout",
    "predict_large",
]

log = logging.getLogger(__name__)

#: Largest side of an HDF5 chunk of the output, fine cells.
MAX_CHUNK = 1024

#: Tasks kept in flight per worker thread: enough to keep workers busy,
#: few enough that finished tiles never pile up in the client's memory.
IN_FLIGHT_PER_THREAD = 2


class PredictionCancelled(RuntimeError):
    """:func:`predict_large` was stopped through its ``cancel`` argument."""


@runtime_checkable
class WindowSource(Protocol):
    """Where the workers of :func:`predict_large` read a window's fields.

    Attributes
    ----------
    x, y : numpy.ndarray
        Cell centres of the whole 150 m input grid, m (EPSG:3413); ``x``
        increasing (``W`` values), ``y`` decreasing (``H`` values), evenly
        spaced.
    """

    x: np.ndarray
    y: np.ndarray

    def window(self, rows: slice, cols: slice) -> xr.Dataset:
        """The grid's fields in the cells ``[rows, cols]``.

        Returns
        -------
        xarray.Dataset
            Dims ``("y", "x")``, loaded in memory, with the fields the
            model's scaler names (``CONVENTIONS.md`` names and units) and
            the window's ``x`` and ``y`` coordinates.
        """
        ...


class DatasetSource:
    """Windows of a grid in the conventions of :mod:`engine.data`.

    Parameters
    ----------
    grid : path-like or xarray.Dataset
        A NetCDF file holding a grid (dims ``("y", "x")``, ``y``
        decreasing, metres in EPSG:3413, the variable names of
        ``CONVENTIONS.md``), or such a Dataset. A path is opened lazily
        by each process that reads from it, so a worker reads only its
        windows; a Dataset is pickled whole to each worker, so pass a path
        for large areas.
    variables : sequence of str, optional
        Variables to read; all data variables when omitted.

    Raises
    ------
    FeatureError
        The grid's ``y`` is not decreasing or a coordinate is missing.
    """

    def __init__(
        self,
        grid: str | PathLike[str] | xr.Dataset,
        *,
        variables: tuple[str, ...] | None = None,
    ) -> None:
        self.path = None if isinstance(grid, xr.Dataset) else Path(grid)
        self._grid = grid if isinstance(grid, xr.Dataset) else None
        dataset = self._open()
        if "x" not in dataset.coords or "y" not in dataset.coords:
            raise FeatureError(
                "the grid has no x and y coordinates; write it with the grid "
                "readers of engine.data"
            )
        self.variables = (
            tuple(map(str, dataset.data_vars)) if variables is None else variables
        )
        self.x = dataset["x"].to_numpy().astype("float64")
        self.y = dataset["y"].to_numpy().astype("float64")
        if self.y.size > 1 and not np.all(np.diff(self.y) < 0):
            raise FeatureError(
                "the grid's y must decrease (row 0 north); sort it with "
                "engine.data.grids.finish_grid before predicting"
            )

    def _open(self) -> xr.Dataset:
        """The grid, opened lazily on first use in this process."""
        if self._grid is None:
            self._grid = xr.open_dataset(self.path)
        return self._grid

    def __getstate__(self) -> dict[str, Any]:
        """Pickle a path-backed source without its open file."""
        state = dict(self.__dict__)
        if self.path is not None:
            state["_grid"] = None
        return state

    def window(self, rows: slice, cols: slice) -> xr.Dataset:
        """Read the cells ``[rows, cols]``; see :class:`WindowSource`."""
        grid = self._open()[list(self.variables)]
        return grid.isel(y=rows, x=cols).transpose("y", "x", ...).load()


class SyntheticGridSource:
    """A procedural grid of any size, each window computed on demand.

    Every field is a sum of a few sinusoids of easting and northing, so a
    window costs time and memory in proportion to its own cells and two
    windows agree where they overlap. Meant for benchmarks and tests: the
    fields have plausible magnitudes, not glaciology.

    Parameters
    ----------
    height, width : int
        Rows and columns of the 150 m grid, >= 2.
    spacing : float
        Cell size, m.
    seed : int
        Seed of the sinusoids' phases and wavelengths.
    x0, y0 : float
        Centre of the north-west cell, m (EPSG:3413); the defaults put the
        grid's corner near BedMachine's.

    Notes
    -----
    Fields (m or m a-1): the five :data:`SURFACE_FIELDS`,
    ``bed_bedmachine`` and ``bed_bedmachine_error``. No NaN anywhere.
    """

    def __init__(
        self,
        height: int,
        width: int,
        *,
        spacing: float = 150.0,
        seed: int = 0,
        x0: float = -652_925.0,
        y0: float = -632_675.0,
    ) -> None:
        if height < 2 or width < 2:
            raise ConfigError(
                f"a synthetic grid needs at least 2 x 2 cells, got {height} x {width}"
            )
        self.spacing = float(spacing)
        self.x = x0 + spacing * np.arange(width, dtype="float64")
        self.y = y0 - spacing * np.arange(height, dtype="float64")

        # Three sinusoids per field: wavelength (m), direction, phase.
        rng = np.random.default_rng(seed)
        names = (*SURFACE_FIELDS, *BEDMACHINE_FIELDS)
        self._waves = {
            name: (
                rng.uniform(3e3, 60e3, 3),
                rng.uniform(0.0, np.pi, 3),
                rng.uniform(0.0, 2 * np.pi, 3),
            )
            for name in names
        }

    def _field(self, name: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Sum of the field's sinusoids on the (y, x) mesh, in [-3, 3]."""
        wavelengths, directions, phases = self._waves[name]
        total = np.zeros((y.size, x.size))
        for wavelength, direction, phase in zip(
            wavelengths, directions, phases, strict=True
        ):
            k = 2 * np.pi / wavelength
            along_x = np.cos(k * np.cos(direction) * x + phase)
            along_y = np.cos(k * np.sin(direction) * y)
            sin_x = np.sin(k * np.cos(direction) * x + phase)
            sin_y = np.sin(k * np.sin(direction) * y)
            # cos(a + b) from the 1-D factors: an outer product per term.
            total += np.outer(along_y, along_x) - np.outer(sin_y, sin_x)
        return total

    def window(self, rows: slice, cols: slice) -> xr.Dataset:
        """Compute the cells ``[rows, cols]``; see :class:`WindowSource`."""
        x, y = self.x[cols], self.y[rows]

        # Fields: offset + scale * sinusoids, in the conventions' units.
        shapes = {
            "surface_elevation": (1500.0, 400.0),
            "surface_velocity_x": (0.0, 60.0),
            "surface_velocity_y": (0.0, 60.0),
            "surface_mass_balance": (-0.5, 0.5),
            "surface_elevation_change": (-0.3, 0.2),
            "bed_bedmachine": (200.0, 250.0),
            "bed_bedmachine_error": (80.0, 20.0),
        }
        data = {
            name: (("y", "x"), (offset + scale * self._field(name, x, y)).astype("f4"))
            for name, (offset, scale) in shapes.items()
        }
        return xr.Dataset(data, coords={"x": x, "y": y})


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A model as plain data, to be sent once to every worker.

    Parameters
    ----------
    kind : {"deeptoponet", "paper"}
        The network class.
    config : dict
        Its config dataclass as a dict (``dataclasses.asdict``).
    state : dict of str to torch.Tensor
        Its ``state_dict`` on the CPU.
    scaler : FeatureScaler
        The feature statistics saved with the model.
    token : str
        Identifies the weights, so that a worker builds the model once.
    """

    kind: str
    config: dict[str, Any]
    state: dict[str, torch.Tensor]
    scaler: FeatureScaler
    token: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex)

    @classmethod
    def from_model(cls, model: nn.Module, scaler: FeatureScaler) -> ModelSpec:
        """Describe a :class:`DeepTopoNet` or :class:`PaperModel` and its scaler."""
        if isinstance(model, DeepTopoNet):
            kind = "deeptoponet"
        elif isinstance(model, PaperModel):
            kind = "paper"
        else:
            raise ConfigError(
                f"predict_large runs DeepTopoNet or PaperModel, got "
                f"{type(model).__name__}; use predict_region for other networks"
            )
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        return cls(
            kind=kind,
            config=dataclasses.asdict(model.config),
            state=state,
            scaler=scaler,
        )

    @classmethod
    def from_run(cls, run_dir: str | PathLike[str]) -> ModelSpec:
        """Read a run folder written by :func:`engine.bedtopo.training.train`."""
        from engine.bedtopo.training import load_model

        result = load_model(run_dir, device="cpu")
        return cls.from_model(result.model, result.scaler)

    def build(self) -> nn.Module:
        """The network with the weights, in eval mode, on the CPU."""
        config = dict(self.config)
        config["widths"] = tuple(config["widths"])
        if self.kind == "paper":
            model: nn.Module = PaperModel(PaperModelConfig(**config))
        else:
            model = DeepTopoNet(DeepTopoNetConfig(**config))
        model.load_state_dict(self.state)
        return model.eval()


@dataclasses.dataclass(frozen=True)
class TileTask:
    """One core of the input grid and the window it is predicted from.

    Attributes
    ----------
    index : int
        Position in the layout (row-major).
    core_rows, core_cols : tuple of int
        ``(start, stop)`` input cells the task writes.
    window_rows, window_cols : tuple of int
        ``(start, stop)`` input cells it reads: the core plus the halo,
        clipped to the grid.
    """

    index: int
    core_rows: tuple[int, int]
    core_cols: tuple[int, int]
    window_rows: tuple[int, int]
    window_cols: tuple[int, int]


@dataclasses.dataclass
class TileReport:
    """What one tile cost; passed to ``tile_report`` of :func:`predict_large`.

    Attributes
    ----------
    task : TileTask
    seconds : float
        Worker time for the tile: reading, features and forward passes.
    write_seconds : float
        Client time to write the tile into the NetCDF file.
    peak_rss_bytes : int
        Peak resident memory of the worker process so far
        (``getrusage(RUSAGE_SELF).ru_maxrss``).
    rss_bytes : int
        Resident memory of the worker process after the tile.
    pid : int
        The worker process.
    """

    task: TileTask
    seconds: float
    write_seconds: float
    peak_rss_bytes: int
    rss_bytes: int
    pid: int


def tile_layout(height: int, width: int, *, tile: int, halo: int) -> list[TileTask]:
    """Cut a grid into square cores, each with its window.

    Parameters
    ----------
    height, width : int
        Rows and columns of the input grid.
    tile : int
        Core side, input cells, >= 1.
    halo : int
        Cells added to each side of a core to make its window, >= 0.

    Returns
    -------
    list of TileTask
        Row-major; the cores cover the grid exactly once.

    Examples
    --------
    >>> [t.core_cols for t in tile_layout(2, 5, tile=2, halo=1)]
    [(0, 2), (2, 4), (4, 5)]
    """
    tasks = []
    for r0 in range(0, height, tile):
        for c0 in range(0, width, tile):
            r1, c1 = min(r0 + tile, height), min(c0 + tile, width)
            tasks.append(
                TileTask(
                    index=len(tasks),
                    core_rows=(r0, r1),
                    core_cols=(c0, c1),
                    window_rows=(max(r0 - halo, 0), min(r1 + halo, height)),
                    window_cols=(max(c0 - halo, 0), min(c1 + halo, width)),
                )
            )
    return tasks


def fit_scaler(
    source: WindowSource,
    *,
    config: FeatureConfig,
    sample: int = 256,
) -> FeatureScaler:
    """Fit feature statistics on a central window of a large source.

    The trend extent is the whole source's, so that the trend channels of
    every window are those of the whole grid.

    Parameters
    ----------
    source : WindowSource
    config : FeatureConfig
        Channels to build.
    sample : int
        Side of the central window, input cells.

    Returns
    -------
    FeatureScaler
    """
    # A central window of at most sample x sample cells.
    height, width = source.y.size, source.x.size
    r0, c0 = max((height - sample) // 2, 0), max((width - sample) // 2, 0)
    window = source.window(
        slice(r0, min(r0 + sample, height)), slice(c0, min(c0 + sample, width))
    )

    # Raw channels with the whole grid's trend extent, then statistics.
    extent = (
        float(source.x.min()),
        float(source.x.max()),
        float(source.y.min()),
        float(source.y.max()),
    )
    values, names, extent = raw_features(window, config=config, trend_extent=extent)
    return FeatureScaler.fit(values, names, trend_extent=extent)


#: Models built in this process, by ModelSpec token.
_MODELS: dict[str, nn.Module] = {}


def _worker_model(spec: ModelSpec) -> nn.Module:
    """The spec's model, built once per process."""
    model = _MODELS.get(spec.token)
    if model is None:
        _MODELS.clear()
        model = spec.build()
        _MODELS[spec.token] = model
    return model


def _predict_tile(
    spec: ModelSpec,
    source: WindowSource,
    task: TileTask,
    *,
    factor: int,
    mc_samples: int,
    seed: int,
    single_thread: bool,
) -> dict[str, Any]:
    """Predict one core on a worker (or in-process); see predict_large."""
    start = time.perf_counter()
    if single_thread and torch.get_num_threads() != 1:
        torch.set_num_threads(1)
    model = _worker_model(spec)

    # The window's fields and their features, built here on the worker.
    rows, cols = slice(*task.window_rows), slice(*task.window_cols)
    grid = source.window(rows, cols)
    features = GridSource(grid, scaler=spec.scaler)

    # The whole window as one tile; only its core is kept.
    side = max(rows.stop - rows.start, cols.stop - cols.start)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", FilledFeatureWarning)
        ds = predict_region(
            model,
            features,
            factor=factor,
            tile=side,
            overlap=0,
            mc_samples=mc_samples,
            batch_size=1,
            seed=seed + task.index,
        )
    top = factor * (task.core_rows[0] - rows.start)
    left = factor * (task.core_cols[0] - cols.start)
    height = factor * (task.core_rows[1] - task.core_rows[0])
    width = factor * (task.core_cols[1] - task.core_cols[0])
    core = (slice(top, top + height), slice(left, left + width))
    bed = ds["bed"].to_numpy()[core].astype("float32")
    std = ds["bed_std"].to_numpy()[core].astype("float32") if mc_samples else None

    # Cost of the tile, measured in this process.
    return {
        "bed": bed,
        "std": std,
        "filled": any(issubclass(w.category, FilledFeatureWarning) for w in caught),
        "seconds": time.perf_counter() - start,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "rss_bytes": psutil.Process().memory_info().rss,
        "pid": os.getpid(),
    }


def _chunk_side(core: int, limit: int = MAX_CHUNK) -> int:
    """Largest divisor of a core's fine side that is at most ``limit``."""
    for side in range(min(core, limit), 0, -1):
        if core % side == 0:
            return side
    return 1


def _create_output(
    path: Path,
    x_fine: np.ndarray,
    y_fine: np.ndarray,
    *,
    names: list[str],
    chunk: int,
    complevel: int,
    attrs: dict[str, Any],
) -> netCDF4.Dataset:
    """Create the full-size CF NetCDF-4 file; return it open for writing."""
    nc = netCDF4.Dataset(path, "w", format="NETCDF4")
    nc.createDimension("y", y_fine.size)
    nc.createDimension("x", x_fine.size)

    # Coordinates: cell centres in metres.
    for name, values, long_name in (
        ("x", x_fine, "easting"),
        ("y", y_fine, "northing"),
    ):
        variable = nc.createVariable(name, "f8", (name,))
        variable.units = "m"
        variable.standard_name = f"projection_{name}_coordinate"
        variable.long_name = long_name
        variable[:] = values

    # Grid mapping written by rioxarray, plus the GDAL geotransform.
    mapping = xr.Dataset().rio.write_crs(CRS)["spatial_ref"].attrs
    crs = nc.createVariable("spatial_ref", "i4")
    crs.setncatts(mapping)
    dx = float(x_fine[1] - x_fine[0]) if x_fine.size > 1 else float("nan")
    dy = float(y_fine[0] - y_fine[1]) if y_fine.size > 1 else float("nan")
    crs.GeoTransform = (
        f"{x_fine[0] - dx / 2} {dx} 0.0 {y_fine[0] + dy / 2} 0.0 {-dy}"
    )

    # Float32 data variables, chunked and compressed, NaN where unset.
    chunks = (min(chunk, y_fine.size), min(chunk, x_fine.size))
    for name in names:
        variable = nc.createVariable(
            name,
            "f4",
            ("y", "x"),
            zlib=True,
            complevel=complevel,
            chunksizes=chunks,
            fill_value=np.float32(np.nan),
        )
        # No chunk cache: each chunk is compressed and written when its
        # tile arrives, so write time is measured where it is spent.
        variable.set_var_chunk_cache(size=1, nelems=1, preemption=1.0)
        variable.setncatts(OUTPUT_ATTRS[name])
        variable.grid_mapping = "spatial_ref"
        variable.coordinates = "spatial_ref"
    nc.setncatts(attrs)
    return nc


def _write_tile(
    nc: netCDF4.Dataset, task: TileTask, result: dict[str, Any], factor: int
) -> None:
    """Write a core's fine cells (and its interval) into its slice."""
    rows = slice(factor * task.core_rows[0], factor * task.core_rows[1])
    cols = slice(factor * task.core_cols[0], factor * task.core_cols[1])
    nc["bed"][rows, cols] = result["bed"]
    std = result["std"]
    if std is not None:
        nc["bed_std"][rows, cols] = std
        nc["bed_lower_90"][rows, cols] = result["bed"] - np.float32(Z_90) * std
        nc["bed_upper_90"][rows, cols] = result["bed"] + np.float32(Z_90) * std


def _cancelled(cancel: Any) -> bool:
    """Whether a cancel flag (``is_set()``) or callable says stop."""
    if cancel is None:
        return False
    if hasattr(cancel, "is_set"):
        return bool(cancel.is_set())
    return bool(cancel())


def _as_spec(model_spec: Any) -> ModelSpec:
    """A ModelSpec from a spec, a TrainResult or a run folder."""
    if isinstance(model_spec, ModelSpec):
        return model_spec
    if isinstance(model_spec, (str, PathLike)):
        return ModelSpec.from_run(model_spec)
    if hasattr(model_spec, "model") and hasattr(model_spec, "scaler"):
        return ModelSpec.from_model(model_spec.model, model_spec.scaler)
    raise ConfigError(
        f"model_spec must be a ModelSpec, a TrainResult or a run folder, got "
        f"{type(model_spec).__name__}"
    )


def _netcdf_attr(value: Any) -> Any:
    """A global attribute NetCDF can store."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (str, int, float, np.number)):
        return value
    return json.dumps(value, default=str)


def predict_large(
    source: WindowSource,
    model_spec: ModelSpec | str | PathLike[str] | Any,
    *,
    out_path: str | PathLike[str],
    tile: int = 256,
    factor: int = 3,
    mc_samples: int = 0,
    seed: int = 0,
    client: Any | None = None,
    scheduler_address: str | None = None,
    n_workers: int = 2,
    complevel: int = 0,
    progress: Callable[[int, int], None] | None = None,
    tile_report: Callable[[TileReport], None] | None = None,
    cancel: Any | None = None,
) -> Path:
    """Predict the fine bed of a large area on Dask workers into one NetCDF.

    See the module docstring for the tiling, the workers and the writing.

    Parameters
    ----------
    source : WindowSource
        The 150 m input grid (e.g. :class:`DatasetSource` of a NetCDF path,
        :class:`SyntheticGridSource`); it must pickle.
    model_spec : ModelSpec, path-like or TrainResult
        The trained model and its scaler, or a run folder holding them.
    out_path : path-like
        The ``.nc`` file to write; an existing file is replaced only once
        the new one is complete.
    tile : int
        Core side in input cells. A worker holds one window of ``(tile + 2
        (R + 1))^2`` input cells and its features and activations: about
        ``widths[-1] x window cells x 4`` bytes per activation map.
    factor : int
        Output cells per input cell along each axis (3: 50 m).
    mc_samples : int
        0 for a deterministic map (only ``bed`` is written), else at least
        2 MC-dropout passes (``bed_std`` and the 90 % interval are added).
    seed : int
        Seed of the dropout masks; tile ``i`` uses ``seed + i``.
    client : distributed.Client, optional
        A client to run on; left open.
    scheduler_address : str, optional
        Address of a running scheduler (``"tcp://host:8786"``) to connect
        to when no client is given; the workers must be able to import
        ``engine``.
    n_workers : int
        Workers of the LocalCluster started on 127.0.0.1 (one thread each,
        separate processes, no dashboard) when neither ``client`` nor
        ``scheduler_address`` is given; 0 runs the tiles one after the
        other in this process.
    complevel : int
        zlib level of the output, 0 (none, the default) to 9. The client
        compresses on the same cores the workers use: on two cores, zlib 4
        held two workers to 1.58x the speed of one, no compression gave
        1.95x (``benchmarks/scale.py``) for files about a third larger.
        Compress afterwards (``nccopy -d 4``) when the size matters.
    progress : callable, optional
        Called as ``progress(done, total)`` after each tile is written.
    tile_report : callable, optional
        Called with a :class:`TileReport` after each tile is written.
    cancel : callable or object with ``is_set()``, optional
        Checked after each tile; when true, pending tiles are dropped, the
        partial file is deleted and :class:`PredictionCancelled` raised.

    Returns
    -------
    pathlib.Path
        The written file. Dims ``("y", "x")`` of ``(factor H, factor W)``
        fine cells (centres in metres, ``x`` increasing, ``y`` decreasing,
        as :func:`engine.bedtopo.targets.fine_coordinates`), EPSG:3413 in
        a ``spatial_ref`` grid-mapping variable, float32 ``bed`` (m, NaN
        where the model had no BedMachine bed) and with MC dropout
        ``bed_std``, ``bed_lower_90`` and ``bed_upper_90`` (m), zlib
        compressed in chunks that divide ``factor x tile``.

    Raises
    ------
    ConfigError
        Bad tile, factor, worker count or model.
    PredictionCancelled
        ``cancel`` said stop; no file is left at ``out_path``.

    Warns
    -----
    FilledFeatureWarning
        Some feature cells were NaN and filled with the channel mean.

    Notes
    -----
    The map equals :func:`engine.bedtopo.predict.predict_region` on the
    whole grid up to float32 round-off for a deterministic model; with MC
    dropout the masks differ per tile, so the samples (not their
    statistics) differ.
    """
    if not isinstance(tile, int) or tile < 1:
        raise ConfigError(f"tile must be a positive integer, got {tile!r}")
    if not isinstance(factor, int) or factor < 1:
        raise ConfigError(f"factor must be a positive integer, got {factor!r}")
    if not isinstance(n_workers, int) or n_workers < 0:
        raise ConfigError(f"n_workers must be 0 or more, got {n_workers!r}")
    spec = _as_spec(model_spec)
    model = spec.build()
    height, width = source.y.size, source.x.size

    # Layout: cores with a halo of the receptive radius plus a gradient cell.
    radius = receptive_radius(model)
    tasks = tile_layout(height, width, tile=tile, halo=radius + 1)
    total = len(tasks)

    # Output file, full size, under a temporary name beside the target.
    target = Path(out_path)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".part"
    )
    os.close(handle)
    temp = Path(temp_name)
    x_fine, y_fine = (
        (source.x, source.y)
        if factor == 1
        else fine_coordinates(source.x, source.y, factor=factor)
    )
    names = ["bed"]
    if mc_samples:
        names += ["bed_std", "bed_lower_90", "bed_upper_90"]
    attrs = {
        "Conventions": "CF-1.8",
        "origin": "predict_large",
        "grid_spacing": float(abs(x_fine[1] - x_fine[0])) if x_fine.size > 1 else 0.0,
        "input_grid_spacing": float(abs(source.x[1] - source.x[0])),
        "factor": factor,
        "tile": tile,
        "tile_halo": radius + 1,
        "model_class": type(model).__name__,
        "model_parameters": int(sum(p.numel() for p in model.parameters())),
        "model_config": json.dumps(spec.config),
        "uncertainty": "mc_dropout" if mc_samples else "none",
        "mc_samples": mc_samples,
    }
    del model
    options = {"factor": factor, "mc_samples": mc_samples, "seed": seed}

    any_filled = False
    own_client = own_cluster = None
    results: Iterator[tuple[TileTask, dict[str, Any]]] | None = None
    try:
        nc = _create_output(
            temp,
            x_fine,
            y_fine,
            names=names,
            chunk=_chunk_side(factor * tile),
            complevel=complevel,
            attrs={k: _netcdf_attr(v) for k, v in attrs.items()},
        )
        try:
            # Results as they come: in-process, or from Dask workers.
            if client is None and scheduler_address is None and n_workers == 0:
                results = _serial_results(spec, source, tasks, options)
            else:
                if client is None:
                    own_client, own_cluster = _start_client(
                        scheduler_address, n_workers
                    )
                    client = own_client
                results = _dask_results(client, spec, source, tasks, options)

            # Each core into its slice, then the callbacks and the cancel test.
            for done, (task, result) in enumerate(results, start=1):
                start = time.perf_counter()
                _write_tile(nc, task, result, factor)
                any_filled |= result["filled"]
                if tile_report is not None:
                    tile_report(
                        TileReport(
                            task=task,
                            seconds=result["seconds"],
                            write_seconds=time.perf_counter() - start,
                            peak_rss_bytes=result["peak_rss_bytes"],
                            rss_bytes=result["rss_bytes"],
                            pid=result["pid"],
                        )
                    )
                if progress is not None:
                    progress(done, total)
                if done < total and _cancelled(cancel):
                    raise PredictionCancelled(
                        f"prediction cancelled after {done} of {total} tiles; "
                        "no output file was written"
                    )
        finally:
            # Pending tiles dropped (after a cancel or an error), file closed.
            if results is not None:
                results.close()
            nc.close()
        os.replace(temp, target)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    finally:
        if own_client is not None:
            own_client.close()
        if own_cluster is not None:
            own_cluster.close()

    if any_filled:
        warnings.warn(
            "some feature cells of the area were NaN and set to the channel "
            "mean (0 after z-scoring); predictions there lean on the other "
            "channels",
            FilledFeatureWarning,
            stacklevel=2,
        )
    return target


def _serial_results(
    spec: ModelSpec,
    source: WindowSource,
    tasks: list[TileTask],
    options: dict[str, Any],
) -> Iterator[tuple[TileTask, dict[str, Any]]]:
    """Run the tiles one after the other in this process."""
    for task in tasks:
        yield task, _predict_tile(spec, source, task, single_thread=False, **options)


def _start_client(scheduler_address: str | None, n_workers: int) -> tuple[Any, Any]:
    """A client of a remote scheduler, or of a new LocalCluster on loopback."""
    from distributed import Client

    from engine.dask_local import local_cluster

    if scheduler_address is not None:
        return Client(scheduler_address), None
    if n_workers < 1:
        raise ConfigError("a LocalCluster needs n_workers >= 1; use 0 for serial")
    cluster = local_cluster(n_workers, threads_per_worker=1)
    return Client(cluster), cluster


def _dask_results(
    client: Any,
    spec: ModelSpec,
    source: WindowSource,
    tasks: list[TileTask],
    options: dict[str, Any],
) -> Iterator[tuple[TileTask, dict[str, Any]]]:
    """Run the tiles on the client's workers, a bounded number at a time."""
    from distributed import as_completed

    # Model and source sent once to every worker.
    spec_future = client.scatter(spec, broadcast=True, hash=False)
    source_future = client.scatter(source, broadcast=True, hash=False)
    threads = max(sum(client.nthreads().values()), 1)
    limit = IN_FLIGHT_PER_THREAD * threads

    def submit(task: TileTask) -> Any:
        return client.submit(
            _predict_tile,
            spec_future,
            source_future,
            task,
            single_thread=True,
            pure=False,
            **options,
        )

    # Keep `limit` tasks in flight; yield each result as it arrives.
    pending = iter(tasks)
    in_flight: dict[Any, TileTask] = {}
    for task in pending:
        in_flight[submit(task)] = task
        if len(in_flight) >= limit:
            break
    queue = as_completed(list(in_flight))
    try:
        for future in queue:
            task = in_flight.pop(future)
            result = future.result()
            future.release()
            next_task = next(pending, None)
            if next_task is not None:
                new = submit(next_task)
                in_flight[new] = next_task
                queue.add(new)
            yield task, result
    finally:
        # Drop what is still queued or running (a cancel or an error).
        queue.clear()
        client.cancel([*in_flight, spec_future, source_future], force=True)
