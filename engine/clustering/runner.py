"""One call to cluster a climate cube: the page, the job and the CLI use it.

:func:`run_clustering` takes a climate cube (``engine/data/CONVENTIONS.md``)
and a :class:`ClusteringConfig`, and returns a :class:`ClusteringResult`:
labels, internal scores, composites, the stages of HEDGTC and the history,
written to a run folder on request and read back by
:func:`load_clustering`.

Two modes:

``"temporal"`` (DSC, HEDGTC, DEC, k-means, Ward, Gaussian mixture)
    Clusters time steps: each sample is the maps of every variable at one
    step (:func:`engine.clustering.prepare.prepare_samples`). The method
    is run ``seeds`` times with seeds ``0 .. seeds - 1``; the labels of
    seed 0 are the result and the mean pairwise ARI of the runs is its
    ``stability``.
``"spatial"`` (k-means, Ward, Gaussian mixture)
    Clusters the land cells inside sliding windows of ``window`` steps,
    ``step`` apart (:func:`engine.clustering.spatial.cluster_windows`),
    after the same anomaly and resampling as the temporal mode.

Every internal score is computed in the **input space**: on the prepared
samples ``X`` (temporal) or the cells' window features (spatial), never in
a network's latent space (see :mod:`engine.clustering.metrics`); with
``fill="mask"`` the samples hold land cells only, with ``fill="mean"``
every cell, sea taking the variable's mean. When the cube carries a
``regime`` coordinate on ``time`` (a planted set) and the steps were not
resampled, ``ari`` and ``nmi`` against it are added.

Run folder (each file written to a temporary name, then moved into place
with :func:`os.replace`, so that a reader never sees half a file):

- ``config.json``: :meth:`ClusteringConfig.to_dict`;
- ``labels.nc`` and ``labels.csv`` (``time,label``; spatial mode:
  ``window_start,lat,lon,label``);
- ``composites.nc``;
- ``metrics.json`` and ``metrics.csv`` (``metric,value``);
- ``stages.npz`` and ``attention.csv`` (HEDGTC only);
- ``history.json``.

Typical use::

    from engine.clustering.runner import ClusteringConfig, run_clustering

    result = run_clustering(cube, ClusteringConfig(method="kmeans", k=7),
                            run_dir="runs/wfde5")
    result.metrics["silhouette_cosine"]
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score

from engine.atomic import atomic_write
from engine.clustering.control import (
    Cancel,
    Progress,
    check_cancel,
    report,
    scaled_progress,
)
from engine.clustering.errors import (
    ClusteringCancelled,
    ClusteringConfigError,
    ClusteringInputError,
)
from engine.clustering.metrics import evaluate, stability
from engine.clustering.prepare import (
    CYCLES,
    PrepareConfig,
    Samples,
    prepare_samples,
    remove_cycle,
)

__all__ = [
    "METHODS",
    "SPATIAL_METHODS",
    "ClusteringConfig",
    "ClusteringResult",
    "compare_methods",
    "load_clustering",
    "run_clustering",
    "sweep_k",
]

#: Methods of the temporal mode.
METHODS = ("dsc", "hedgtc", "dec", "kmeans", "ward", "gmm")

#: Methods of the spatial mode (cells are clustered window by window).
SPATIAL_METHODS = ("kmeans", "ward", "gmm")

#: Edges of the strongest attention kept in ``stages["attention"]``.
ATTENTION_EDGES = 500

# Label of a step or cell without a cluster.
NO_LABEL = -1


# ---------------------------------------------------------------------------
# Configuration and result
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ClusteringConfig:
    """What to cluster and how.

    Parameters
    ----------
    method
        One of :data:`METHODS` (temporal mode) or :data:`SPATIAL_METHODS`
        (spatial mode).
    k
        Number of clusters, at least 2 (7 in DSC's and HEDGTC's ERA5 runs).
    mode
        ``"temporal"`` (cluster time steps) or ``"spatial"`` (cluster
        cells in sliding windows).
    prepare
        Variables, anomaly, resampling, scaling and sea handling, see
        :class:`engine.clustering.prepare.PrepareConfig`.
    window, step
        Spatial mode: window length and distance between window starts,
        in time steps (after resampling).
    seeds
        Runs with seeds ``0 .. seeds - 1`` for the stability score; 1
        skips it (``stability`` is then ``NaN``).
    quick
        Quick presets of DSC, DEC and HEDGTC (seconds to a minute on a
        CPU); ``False`` trains longer (see :func:`method_settings`).
    workers
        Dask worker processes of a local cluster for HEDGTC's base runs;
        0 runs them in this process; ``None`` leaves it to the preset
        (:func:`method_settings`: 0 for the quick one, whose members take
        milliseconds, 2 for the longer one with DEC and DSC members). A
        ``client`` given to :func:`run_clustering` wins.
    """

    method: str = "hedgtc"
    k: int = 7
    mode: str = "temporal"
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    window: int = 24
    step: int = 24
    seeds: int = 3
    quick: bool = True
    workers: int | None = None

    def __post_init__(self) -> None:
        """Check every setting, naming the accepted values."""
        if isinstance(self.prepare, dict):
            object.__setattr__(self, "prepare", _prepare_from_dict(self.prepare))
        if self.mode not in ("temporal", "spatial"):
            raise ClusteringConfigError(
                f"mode={self.mode!r}; use 'temporal' or 'spatial'"
            )
        allowed = METHODS if self.mode == "temporal" else SPATIAL_METHODS
        if self.method not in allowed:
            raise ClusteringConfigError(
                f"method={self.method!r} in {self.mode} mode; use one of {allowed}"
            )
        checks = [
            (int(self.k) >= 2, f"k={self.k}; ask for at least 2 clusters"),
            (self.window >= 1, f"window={self.window}; it must be >= 1 step"),
            (self.step >= 1, f"step={self.step}; it must be >= 1 step"),
            (self.seeds >= 1, f"seeds={self.seeds}; it must be >= 1"),
            (
                self.workers is None or self.workers >= 0,
                f"workers={self.workers}; 0 (serial) or more, or None (preset)",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ClusteringConfigError(f"ClusteringConfig: {message}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready values, read back by :meth:`from_dict`."""
        values = asdict(self)
        prepare = values["prepare"]
        if prepare["variables"] is not None:
            prepare["variables"] = list(prepare["variables"])
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ClusteringConfig:
        """A config from :meth:`to_dict`'s output; unknown keys are errors."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(values) - known)
        if unknown:
            raise ClusteringConfigError(
                f"unknown ClusteringConfig key(s) {unknown}; known: {sorted(known)}"
            )
        values = dict(values)
        if isinstance(values.get("prepare"), dict):
            values["prepare"] = _prepare_from_dict(values["prepare"])
        return cls(**values)


@dataclass
class ClusteringResult:
    """Outcome of :func:`run_clustering`.

    Attributes
    ----------
    labels
        Temporal mode: dims ``("time",)``, int64 cluster of each step.
        Spatial mode: dims ``("window_start", "lat", "lon")``, int64,
        ``-1`` over sea and in gaps. Empty (all ``-1``) when cancelled
        before any run finished.
    metrics
        Input-space scores of :func:`engine.clustering.metrics.evaluate`
        (spatial mode: their mean over windows), ``stability`` (mean
        pairwise ARI over the seeds), ``seconds`` (wall time), ``ari``
        and ``nmi`` with a known ``regime``, and ``space`` (a note that
        the scores are in the input space, with the sea handling).
    composites
        Temporal mode: per variable, the mean anomaly of the cluster's
        steps from the mean of all steps, in the variable's units, dims
        ``("cluster", "lat", "lon")``, ``NaN`` over sea; ``n_steps`` per
        cluster. Spatial mode: per variable, the mean over the cluster's
        cells and the window's steps, dims ``("window_start",
        "cluster")``; ``n_cells`` per window and cluster.
    stages
        HEDGTC only: ``co_association`` (algorithm to ``(T, T)``),
        ``consensus`` (stage name to labels ``(T,)``), ``agreement`` (ARI
        between the two halves of the dual consensus) and ``attention``
        (DataFrame of the strongest GAT edges: ``source_time``,
        ``target_time``, ``weight``). Empty otherwise.
    history
        One dict per stage or training report, each with ``seed``.
    config
        The settings used.
    run_dir
        Folder the result was written to, or ``None``.
    cancelled
        Whether the caller's cancel token stopped the run.
    """

    labels: xr.DataArray
    metrics: dict[str, Any]
    composites: xr.Dataset
    stages: dict[str, Any]
    history: list[dict[str, Any]]
    config: ClusteringConfig
    run_dir: Path | None = None
    cancelled: bool = False


# ---------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------


def run_clustering(
    cube: xr.Dataset,
    config: ClusteringConfig | None = None,
    *,
    run_dir: str | os.PathLike[str] | None = None,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    client: Any | None = None,
) -> ClusteringResult:
    """Cluster a climate cube as the config says.

    Parameters
    ----------
    cube
        Climate cube, dims ``("time", "lat", "lon")``, ``NaN`` over sea.
        A ``regime`` coordinate on ``time`` adds ``ari`` and ``nmi``.
    config
        Settings; ``None`` uses the defaults of :class:`ClusteringConfig`.
    run_dir
        Folder to write the result to (created); ``None`` writes nothing.
        A cancelled run writes nothing.
    progress
        Called with one dict per report: ``stage``, ``fraction`` of the
        whole run (0..1), ``seed`` and the stage's own entries.
    cancel
        Token with ``is_set()``; once set, the run stops and the result
        comes back with ``cancelled=True`` (the seeds finished so far are
        kept).
    client
        A ``distributed.Client`` for HEDGTC's base runs.

    Returns
    -------
    ClusteringResult
        Labels, input-space metrics, composites, HEDGTC stages, history.

    Raises
    ------
    ClusteringInputError
        The cube has no time axis, too few steps for ``k``, or a variable
        is missing or empty.
    ClusteringConfigError
        A setting is out of range.
    """
    config = config or ClusteringConfig()
    start = time.perf_counter()
    report(progress, "prepare", 0.0)

    # Step 1: the run of the chosen mode.
    if config.mode == "temporal":
        samples = prepare_samples(cube, config.prepare, n_clusters=config.k)
        result = _run_temporal(
            cube, samples, config, progress=progress, cancel=cancel, client=client
        )
    else:
        result = _run_spatial(cube, config, progress=progress, cancel=cancel)
    result.metrics["seconds"] = time.perf_counter() - start

    # Step 2: the run folder.
    if run_dir is not None and not result.cancelled:
        result.run_dir = _write_run(result, Path(run_dir))
    report(progress, "done", 1.0, cancelled=result.cancelled)
    return result


def method_settings(method: str, *, quick: bool, seed: int) -> Any:
    """The DSC/DEC or HEDGTC settings the runner uses.

    Parameters
    ----------
    method
        ``"dsc"``, ``"dec"`` or ``"hedgtc"``.
    quick
        Quick presets (:meth:`DSCConfig.quick`, :meth:`HEDGTCConfig.quick`)
        or longer training: DSC/DEC 40 pre-training epochs and at most
        480 clustering iterations; HEDGTC's defaults (10 runs per
        algorithm, 200 + 100 network epochs) with DEC and DSC members too
        (3 runs each, on 2 Dask workers). The quick HEDGTC ensemble holds
        k-means, Gaussian mixture and Ward members only. HEDGTC always uses
        persistence in time: members and network on samples whitened by
        the noise seen between consecutive steps, and a last stage that
        refines the network's and every consensus' labels by a sticky
        hidden Markov model, keeping the most likely
        (``temporal_whiten=True``, ``temporal_refine=True``).
    seed
        Seed of the run.

    Returns
    -------
    DSCConfig or HEDGTCConfig
    """
    if method in ("dsc", "dec"):
        from engine.clustering.dsc import DSCConfig

        if quick:
            return DSCConfig.quick(seed=seed)
        return DSCConfig.quick(seed=seed, pretrain_epochs=40, max_iterations=480)
    from engine.clustering.hedgtc import HEDGTCConfig

    temporal = {"temporal_whiten": True, "temporal_refine": True}
    if quick:
        return HEDGTCConfig.quick(seed=seed, **temporal)
    return HEDGTCConfig(
        seed=seed,
        algorithms=("kmeans", "gmm", "ward", "dec", "dsc"),
        deep_runs=3,
        n_workers=2,
        **temporal,
    )


def sweep_k(
    cube: xr.Dataset,
    prepare: PrepareConfig | None,
    ks: Sequence[int],
    *,
    seed: int = 0,
) -> pd.DataFrame:
    """k-means inertia and cosine silhouette for each cluster count.

    The elbow and silhouette helper of the page: one k-means (ten starts)
    per ``k`` on the prepared samples, scored in the input space.

    Parameters
    ----------
    cube
        Climate cube, dims ``("time", "lat", "lon")``.
    prepare
        Sample preparation; ``None`` uses the defaults.
    ks
        Cluster counts, each 2 .. steps - 1.
    seed
        Seed of k-means.

    Returns
    -------
    pandas.DataFrame
        One row per ``k``: ``k``, ``inertia`` (sum of squared distances
        to the centroids, z-score units squared) and
        ``silhouette_cosine``.
    """
    # Prepare once, for the largest k.
    ks = [int(k) for k in ks]
    if not ks or min(ks) < 2:
        raise ClusteringConfigError(f"ks={ks}; give cluster counts of at least 2")
    samples = prepare_samples(cube, prepare, n_clusters=max(ks) + 1)

    # One k-means per k.
    rows = []
    for k in ks:
        model = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(samples.X)
        silhouette = silhouette_score(samples.X, model.labels_, metric="cosine")
        rows.append(
            {"k": k, "inertia": float(model.inertia_), "silhouette_cosine": silhouette}
        )
    return pd.DataFrame(rows)


def compare_methods(
    cube: xr.Dataset,
    config: ClusteringConfig,
    methods: Sequence[str],
    *,
    progress: Progress | None = None,
    cancel: Cancel | None = None,
    client: Any | None = None,
) -> pd.DataFrame:
    """Every method's metrics on the same prepared cube.

    Parameters
    ----------
    cube
        Climate cube, dims ``("time", "lat", "lon")``.
    config
        Settings shared by every method (its ``method`` is replaced).
    methods
        Names from :data:`METHODS` (or :data:`SPATIAL_METHODS`).
    progress, cancel, client
        As in :func:`run_clustering`; ``progress`` reports carry
        ``method``.

    Returns
    -------
    pandas.DataFrame
        One row per method (index ``method``), the columns of
        ``ClusteringResult.metrics``; all internal scores in the input
        space of the same samples.
    """
    # The samples once, for every temporal method.
    methods = list(methods)
    samples = None
    if config.mode == "temporal":
        samples = prepare_samples(cube, config.prepare, n_clusters=config.k)

    # Each method in turn.
    rows = {}
    for i, method in enumerate(methods):
        check_cancel(cancel)
        settings = replace(config, method=method)
        hook = scaled_progress(
            progress, i / len(methods), (i + 1) / len(methods), method=method
        )
        start = time.perf_counter()
        if samples is not None:
            result = _run_temporal(
                cube, samples, settings, progress=hook, cancel=cancel, client=client
            )
        else:
            result = _run_spatial(cube, settings, progress=hook, cancel=cancel)
        if result.cancelled:
            raise ClusteringCancelled("comparison cancelled by the caller")
        result.metrics["seconds"] = time.perf_counter() - start
        rows[method] = result.metrics
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "method"
    return table


def load_clustering(run_dir: str | os.PathLike[str]) -> ClusteringResult:
    """Read a run folder written by :func:`run_clustering`.

    Parameters
    ----------
    run_dir
        The folder.

    Returns
    -------
    ClusteringResult
        As written; ``stages`` rebuilt from ``stages.npz`` and
        ``attention.csv`` when present.

    Raises
    ------
    ClusteringInputError
        The folder or one of its required files is missing.
    """
    folder = Path(run_dir)
    required = ("config.json", "labels.nc", "composites.nc", "metrics.json")
    missing = [name for name in required if not (folder / name).is_file()]
    if missing:
        raise ClusteringInputError(
            f"{folder}: missing {', '.join(missing)}; is it a clustering run "
            "folder written by run_clustering(..., run_dir=...)?"
        )

    # Config, labels, composites and metrics.
    config_values = json.loads((folder / "config.json").read_text())
    config = ClusteringConfig.from_dict(config_values)
    labels = xr.load_dataarray(folder / "labels.nc")
    composites = xr.load_dataset(folder / "composites.nc")
    metrics = json.loads((folder / "metrics.json").read_text())
    history_path = folder / "history.json"
    history = json.loads(history_path.read_text()) if history_path.is_file() else []

    # HEDGTC's stages.
    stages: dict[str, Any] = {}
    if (folder / "stages.npz").is_file():
        with np.load(folder / "stages.npz") as saved:
            stages = {"co_association": {}, "consensus": {}}
            for key in saved.files:
                group, _, name = key.partition("/")
                if group in ("co_association", "consensus"):
                    stages[group][name] = saved[key]
                elif key == "agreement":
                    stages["agreement"] = float(saved[key])
        attention_path = folder / "attention.csv"
        if attention_path.is_file():
            stages["attention"] = pd.read_csv(
                attention_path, parse_dates=["source_time", "target_time"]
            )
    return ClusteringResult(
        labels=labels,
        metrics=metrics,
        composites=composites,
        stages=stages,
        history=history,
        config=config,
        run_dir=folder,
        cancelled=False,
    )


# ---------------------------------------------------------------------------
# Temporal mode
# ---------------------------------------------------------------------------


@contextmanager
def _seeds_client(config: ClusteringConfig, client: Any | None) -> Iterator[Any]:
    """The client for HEDGTC's base runs, shared by every seed of a run.

    The given client as it is; else, when HEDGTC runs several seeds on
    Dask worker processes, one local cluster started here and closed after
    the last seed; else ``None`` (each run starts what it needs, or runs
    serially).
    """
    workers = config.workers
    if workers is None and config.method == "hedgtc":
        workers = method_settings("hedgtc", quick=config.quick, seed=0).n_workers
    shared = client is None and config.method == "hedgtc" and config.seeds > 1
    if not (shared and workers):
        yield client
        return
    try:
        import distributed
    except ImportError:
        # run_members warns and runs the members serially.
        yield None
        return
    from engine.dask_local import local_cluster

    with local_cluster(workers) as cluster, distributed.Client(cluster) as own:
        yield own


def _run_temporal(
    cube: xr.Dataset,
    samples: Samples,
    config: ClusteringConfig,
    *,
    progress: Progress | None,
    cancel: Cancel | None,
    client: Any | None,
) -> ClusteringResult:
    """Run the method once per seed on prepared samples, then score it."""
    # Step 1: one run per seed; seed 0 gives the labels.
    runs: list[np.ndarray] = []
    history: list[dict[str, Any]] = []
    stages: dict[str, Any] = {}
    cancelled = False
    # HEDGTC on Dask: one local cluster for every seed, not one each.
    with _seeds_client(config, client) as client:
        for seed in range(config.seeds):
            hook = _seed_progress(progress, seed, config.seeds)
            try:
                check_cancel(cancel)
                labels, run_history, run_stages, stopped = _run_method(
                    samples, config, seed, progress=hook, cancel=cancel, client=client
                )
            except ClusteringCancelled:
                cancelled = True
                break
            if stopped:
                cancelled = True
                break
            runs.append(labels)
            history.extend({"seed": seed, **row} for row in run_history)
            if seed == 0:
                stages = run_stages

    # Step 2: labels as a (time,) array; -1 when nothing finished.
    labels = runs[0] if runs else np.full(samples.n_samples, NO_LABEL)
    label_array = xr.DataArray(
        labels.astype(np.int64),
        dims=("time",),
        coords={"time": samples.times},
        name="cluster",
        attrs={
            "long_name": f"{config.method} cluster of each time step",
            "units": "1",
            "method": config.method,
            "n_clusters": config.k,
            "no_label_value": NO_LABEL,
        },
    )
    if not runs:
        return ClusteringResult(
            labels=label_array,
            metrics={},
            composites=xr.Dataset(),
            stages={},
            history=history,
            config=config,
            cancelled=True,
        )

    # Step 3: input-space scores, truth when known, stability over seeds.
    truth = _truth(cube, samples)
    metrics: dict[str, Any] = dict(evaluate(samples.X, labels, truth=truth))
    metrics["stability"] = stability(runs) if len(runs) >= 2 else float("nan")
    metrics["space"] = f"input (prepared samples, fill={samples.fill})"

    # Step 4: composites and the HEDGTC stages' time labels.
    composites = _temporal_composites(samples, labels, config.k)
    if "attention" in stages:
        stages["attention"] = _attention_table(stages["attention"], samples.times)
    return ClusteringResult(
        labels=label_array,
        metrics=metrics,
        composites=composites,
        stages=stages,
        history=history,
        config=config,
        cancelled=cancelled,
    )


def _run_method(
    samples: Samples,
    config: ClusteringConfig,
    seed: int,
    *,
    progress: Progress | None,
    cancel: Cancel | None,
    client: Any | None,
) -> tuple[np.ndarray, list[dict[str, Any]], dict[str, Any], bool]:
    """Labels, history, stages and whether cancel stopped it, for one seed."""
    method, k = config.method, config.k

    # The classic baselines.
    if method in ("kmeans", "ward", "gmm"):
        from engine.clustering.baselines import BASELINES

        start = time.perf_counter()
        labels = BASELINES[method](samples.X, k, seed=seed)
        report(progress, method, 1.0)
        seconds = time.perf_counter() - start
        return labels, [{"stage": method, "seconds": seconds}], {}, False

    # DSC and DEC: partial results when cancelled.
    if method in ("dsc", "dec"):
        from engine.clustering.dec import run_dec
        from engine.clustering.dsc import run_dsc

        runner = run_dsc if method == "dsc" else run_dec
        result = runner(
            samples,
            k,
            method_settings(method, quick=config.quick, seed=seed),
            progress=progress,
            cancel=cancel,
        )
        return result.labels, list(result.history), {}, result.cancelled

    # HEDGTC, with its stages.
    from engine.clustering.hedgtc import run_hedgtc

    settings = method_settings("hedgtc", quick=config.quick, seed=seed)
    if config.workers is not None:
        settings = replace(settings, n_workers=config.workers)
    result = run_hedgtc(
        samples, k, settings, progress=progress, cancel=cancel, client=client
    )
    consensus = {
        f"homogeneous_{name}": labels
        for name, labels in result.homogeneous_labels.items()
    }
    consensus["heterogeneous_spectral"] = result.heterogeneous_spectral
    consensus["heterogeneous_nmf"] = result.heterogeneous_nmf
    consensus["final"] = result.labels
    stages = {
        "co_association": dict(result.homogeneous_co_association),
        "consensus": consensus,
        "agreement": float(result.dual_agreement),
        "attention": result.attention,
    }
    return result.labels, list(result.history), stages, False


def _truth(cube: xr.Dataset, samples: Samples) -> np.ndarray | None:
    """The cube's ``regime`` per sample, when it lines up with the samples."""
    if "regime" not in cube.coords or cube["regime"].dims != ("time",):
        return None
    regime = np.asarray(cube["regime"].values)
    times = np.asarray(cube["time"].values).astype("datetime64[ns]")
    if regime.size != samples.n_samples or not np.array_equal(times, samples.times):
        return None
    return regime


def _temporal_composites(samples: Samples, labels: np.ndarray, k: int) -> xr.Dataset:
    """Mean anomaly of each cluster's steps, per variable, in its units."""
    # Cluster means minus the mean of all steps, in scaled units.
    overall = samples.X.mean(axis=0, dtype=np.float64)
    clusters = np.arange(k)
    means = np.stack(
        [
            samples.X[labels == c].mean(axis=0, dtype=np.float64) - overall
            if np.any(labels == c)
            else np.full(samples.X.shape[1], np.nan)
            for c in clusters
        ]
    )

    # Back on the grid, times each variable's scale; sea NaN.
    maps = samples.to_maps(means) * samples.scale[None, :, None, None]
    maps[:, :, ~samples.mask] = np.nan

    # One variable per field, keeping its units.
    data_vars = {
        name: xr.Variable(
            ("cluster", "lat", "lon"),
            maps[:, v],
            attrs={
                "units": units,
                "long_name": f"mean anomaly of {name} in the cluster's steps",
            },
        )
        for v, (name, units) in enumerate(
            zip(samples.variables, samples.units, strict=True)
        )
    }
    data_vars["n_steps"] = xr.Variable(
        ("cluster",),
        np.bincount(labels[labels >= 0], minlength=k)[:k].astype(np.int64),
        attrs={"units": "1", "long_name": "time steps in the cluster"},
    )
    return xr.Dataset(
        data_vars,
        coords={
            "cluster": clusters,
            "lat": ("lat", samples.lat, {"units": "degrees_north"}),
            "lon": ("lon", samples.lon, {"units": "degrees_east"}),
        },
        attrs={"fill": samples.fill},
    )


def _attention_table(
    attention: list[tuple[np.ndarray, np.ndarray]], times: np.ndarray
) -> pd.DataFrame:
    """The strongest edges of the last GAT layer, heads averaged."""
    columns = ["source_time", "target_time", "weight"]
    if not attention:
        return pd.DataFrame(columns=columns)

    # Last layer, mean over heads, self-loops left out.
    edge_index, alpha = attention[-1]
    weight = np.asarray(alpha, dtype=np.float64).reshape(len(edge_index[0]), -1)
    weight = weight.mean(axis=1)
    keep = edge_index[0] != edge_index[1]
    source, target, weight = edge_index[0][keep], edge_index[1][keep], weight[keep]

    # Strongest first.
    order = np.argsort(-weight, kind="stable")[:ATTENTION_EDGES]
    return pd.DataFrame(
        {
            "source_time": times[source[order]],
            "target_time": times[target[order]],
            "weight": weight[order],
        }
    )


# ---------------------------------------------------------------------------
# Spatial mode
# ---------------------------------------------------------------------------


def _run_spatial(
    cube: xr.Dataset,
    config: ClusteringConfig,
    *,
    progress: Progress | None,
    cancel: Cancel | None,
) -> ClusteringResult:
    """Cluster the cells of each window, once per seed, then score it."""
    from engine.clustering.spatial import cell_features, cluster_windows

    # Step 1: anomalies and resampling as in the temporal mode.
    fields = _spatial_fields(cube, config)
    algorithm = _cell_algorithm(config.method)

    # Step 2: the windows, once per seed.
    runs = []
    for seed in range(config.seeds):
        hook = _seed_progress(progress, seed, config.seeds)
        try:
            runs.append(
                cluster_windows(
                    fields,
                    config.k,
                    window=config.window,
                    step=config.step,
                    algorithm=algorithm,
                    seed=seed,
                    progress=hook,
                    cancel=cancel,
                )
            )
        except ClusteringCancelled:
            break
    cancelled = len(runs) < config.seeds
    if not runs:
        return ClusteringResult(
            labels=xr.DataArray(np.zeros((0, 0, 0), dtype=np.int64)),
            metrics={},
            composites=xr.Dataset(),
            stages={},
            history=[],
            config=config,
            cancelled=True,
        )
    labels = runs[0]

    # Step 3: input-space scores per window, averaged; stability per window.
    values = np.stack([fields[name].values for name in fields.data_vars])
    starts = np.searchsorted(fields["time"].values, labels["window_start"].values)
    per_window = []
    for w, begin in enumerate(starts):
        X, cells = cell_features(values[:, begin : begin + config.window])
        scores = evaluate(X, labels.values[w][cells])
        if len(runs) >= 2:
            scores["stability"] = stability([run.values[w][cells] for run in runs])
        per_window.append(scores)
    metrics: dict[str, Any] = pd.DataFrame(per_window).mean().to_dict()
    metrics.setdefault("stability", float("nan"))
    metrics["n_windows"] = float(len(starts))
    metrics["space"] = "input (cell series in each window, land cells only)"

    # Step 4: composites per window and cluster.
    composites = _spatial_composites(fields, labels, starts, config)
    history = [{"seed": 0, "stage": "windows", "windows": int(len(starts))}]
    return ClusteringResult(
        labels=labels,
        metrics=metrics,
        composites=composites,
        stages={},
        history=history,
        config=config,
        cancelled=cancelled,
    )


def _spatial_fields(cube: xr.Dataset, config: ClusteringConfig) -> xr.Dataset:
    """The chosen fields after the config's anomaly and resampling."""
    prepare = config.prepare
    missing = [dim for dim in ("time", "lat", "lon") if dim not in cube.dims]
    if missing:
        raise ClusteringInputError(
            f"the cube has no {', '.join(missing)} dimension (dims: "
            f"{list(cube.dims)}); clustering needs a climate cube with dims "
            "(time, lat, lon): open it with engine.data.climate.to_cube"
        )
    names = list(prepare.variables or [
        str(name) for name, da in cube.data_vars.items() if "time" in da.dims
    ])
    unknown = [name for name in names if name not in cube.data_vars]
    if unknown or not names:
        raise ClusteringInputError(
            f"variable(s) {unknown or names} not usable; the cube holds "
            f"{[str(n) for n in cube.data_vars]}"
        )
    fields = cube[names].transpose("time", "lat", "lon", ...).load()
    fields = fields.drop_vars([c for c in fields.coords if c not in fields.dims])
    if prepare.anomaly is not None and prepare.anomaly in CYCLES:
        fields = xr.Dataset(
            {name: remove_cycle(fields[name], cycle=prepare.anomaly) for name in names}
        )
    if prepare.resample is not None:
        fields = fields.resample(time=prepare.resample).mean(keep_attrs=True)
    if fields.sizes["time"] < config.window:
        raise ClusteringInputError(
            f"{fields.sizes['time']} time steps for windows of {config.window}; "
            "choose a shorter window or a longer period"
        )
    return fields


def _cell_algorithm(method: str) -> Callable[[np.ndarray, int, int], np.ndarray]:
    """The base algorithm of the spatial mode for a method name."""
    from engine.clustering.members import gmm_member
    from engine.clustering.spatial import kmeans_cells

    if method == "kmeans":
        return kmeans_cells
    if method == "gmm":
        return gmm_member
    return _ward_cells


def _ward_cells(X: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Ward linkage on every feature (deterministic; ``seed`` unused)."""
    from engine.clustering.baselines import run_ward

    return run_ward(X, k)


def _spatial_composites(
    fields: xr.Dataset,
    labels: xr.DataArray,
    starts: np.ndarray,
    config: ClusteringConfig,
) -> xr.Dataset:
    """Mean of each variable over a cluster's cells and the window's steps."""
    n_windows = len(starts)
    n_clusters = int(max(labels.values.max() + 1, config.k))
    counts = np.zeros((n_windows, n_clusters), dtype=np.int64)
    data_vars = {}
    for name in fields.data_vars:
        values = fields[name].values
        means = np.full((n_windows, n_clusters), np.nan)
        for w, begin in enumerate(starts):
            with warnings.catch_warnings():
                # Sea cells are NaN at every step: their mean stays NaN.
                warnings.simplefilter("ignore", RuntimeWarning)
                window_mean = np.nanmean(values[begin : begin + config.window], axis=0)
            for c in range(n_clusters):
                cells = labels.values[w] == c
                counts[w, c] = int(cells.sum())
                if cells.any():
                    means[w, c] = float(np.nanmean(window_mean[cells]))
        data_vars[str(name)] = xr.Variable(
            ("window_start", "cluster"),
            means,
            attrs={
                "units": str(fields[name].attrs.get("units", "")),
                "long_name": f"mean of {name} over the cluster's cells and window",
            },
        )
    data_vars["n_cells"] = xr.Variable(
        ("window_start", "cluster"),
        counts,
        attrs={"units": "1", "long_name": "cells in the cluster"},
    )
    return xr.Dataset(
        data_vars,
        coords={
            "window_start": labels["window_start"].values,
            "cluster": np.arange(n_clusters),
        },
    )


# ---------------------------------------------------------------------------
# Run folder
# ---------------------------------------------------------------------------


def _write_run(result: ClusteringResult, folder: Path) -> Path:
    """Write every file of the run folder, each atomically."""
    folder.mkdir(parents=True, exist_ok=True)

    # Config, metrics and history as JSON.
    _atomic_text(folder / "config.json", _json(result.config.to_dict()))
    _atomic_text(folder / "metrics.json", _json(result.metrics))
    _atomic_text(folder / "history.json", _json(result.history))
    metrics_table = pd.DataFrame(
        {"metric": list(result.metrics), "value": list(result.metrics.values())}
    )
    _atomic_text(folder / "metrics.csv", metrics_table.to_csv(index=False))

    # Labels as NetCDF (integers kept: -1 is not a fill value) and CSV.
    labels = result.labels.copy()
    labels.attrs.pop("missing_value", None)
    labels.attrs["no_label_value"] = NO_LABEL
    _atomic_file(folder / "labels.nc", labels.to_netcdf)
    table = result.labels.rename("label").to_dataframe()[["label"]].reset_index()
    _atomic_text(folder / "labels.csv", table.to_csv(index=False))

    # Composites.
    _atomic_file(folder / "composites.nc", result.composites.to_netcdf)

    # HEDGTC's stages.
    if result.stages:
        arrays = {
            f"co_association/{name}": matrix
            for name, matrix in result.stages["co_association"].items()
        }
        arrays.update(
            {
                f"consensus/{name}": labels
                for name, labels in result.stages["consensus"].items()
            }
        )
        arrays["agreement"] = np.asarray(result.stages["agreement"])
        _atomic_file(folder / "stages.npz", lambda path: _save_npz(path, arrays))
        attention = result.stages.get("attention")
        if isinstance(attention, pd.DataFrame):
            _atomic_text(folder / "attention.csv", attention.to_csv(index=False))
    return folder


def _save_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` to exactly ``path`` (no added suffix)."""
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)


def _seed_progress(progress: Progress | None, seed: int, seeds: int) -> Progress | None:
    """The progress hook of one seed's run: its share of 5 %..95 %."""
    return scaled_progress(
        progress, 0.05 + 0.9 * seed / seeds, 0.05 + 0.9 * (seed + 1) / seeds, seed=seed
    )


def _atomic_file(path: Path, write: Callable[[str], Any]) -> None:
    """Let ``write(temp_path)`` write a file, then move it onto ``path``."""
    atomic_write(path, lambda temporary: write(str(temporary)))


def _atomic_text(path: Path, text: str) -> None:
    """Write text to ``path`` through a temporary file."""
    _atomic_file(path, lambda temp: Path(temp).write_text(text))


def _json(values: Any) -> str:
    """JSON with numpy scalars and NaN (as null) handled."""

    def plain(value: Any) -> Any:
        """One value as a JSON type."""
        if isinstance(value, dict):
            return {str(key): plain(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(item) for item in value]
        if isinstance(value, (np.integer, np.bool_)):
            return value.item()
        if isinstance(value, (float, np.floating)):
            return None if not np.isfinite(value) else float(value)
        if isinstance(value, np.ndarray):
            return plain(value.tolist())
        if value is None or isinstance(value, (str, int, bool)):
            return value
        return str(value)

    return json.dumps(plain(values), indent=2)


def _prepare_from_dict(values: dict[str, Any]) -> PrepareConfig:
    """A PrepareConfig from its ``asdict`` form; unknown keys are errors."""
    known = set(PrepareConfig.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ClusteringConfigError(
            f"unknown PrepareConfig key(s) {unknown}; known: {sorted(known)}"
        )
    values = dict(values)
    if values.get("variables") is not None:
        values["variables"] = tuple(values["variables"])
    return PrepareConfig(**values)
