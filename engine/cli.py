"""Command line of the engine: ``python -m engine <subject> <command>``.

Examples::

    python -m engine data info subdomain_data.h5
    python -m engine data list
    python -m engine data fetch helheim
    python -m engine data twin --seed 3 --out twin.nc
    python -m engine data region subdomain_data.h5 --box -38.9 66.4 -38.5 66.6
    python -m engine data bedmachine --preset "Upernavik Isstrom"
    python -m engine jobs list
    python -m engine bed evaluate --grid subdomain_data.h5 \
        --radar flightTracks.mat --out runs/helheim --preset quick
    python -m engine bed predict --run runs/helheim --grid other.h5 --out bed.nc
    python -m engine cluster run --data wfde5_uk_201701/ --method hedgtc \
        --k 7 --daily --out runs/wfde5
    python -m engine cluster evaluate --data wfde5_uk_201701/ \
        --methods kmeans,ward,dsc,hedgtc
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path
from typing import Any, Sequence

from engine.data.errors import DataError


def _print_summary(summary: dict[str, Any], indent: int = 0) -> None:
    """Print a nested summary as indented ``key: value`` lines."""
    pad = " " * indent
    for key, value in summary.items():
        if isinstance(value, dict):
            print(f"{pad}{key}:")
            _print_summary(value, indent + 2)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            print(f"{pad}{key}:")
            for item in value:
                print(f"{pad}  -")
                _print_summary(item, indent + 4)
        elif isinstance(value, float):
            print(f"{pad}{key}: {value:.6g}")
        elif isinstance(value, (tuple, list)) and all(
            isinstance(v, float) for v in value
        ):
            print(f"{pad}{key}: " + ", ".join(f"{v:.6g}" for v in value))
        else:
            print(f"{pad}{key}: {value}")


def _cmd_info(args: argparse.Namespace) -> int:
    from engine.data.info import describe_file

    summary = describe_file(args.file)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(f"{args.file}")
        _print_summary(summary, indent=2)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from engine.data import registry

    for entry in registry.datasets():
        print(f"{entry.key}: {entry.title}")
        print(f"  origin: {entry.origin}")
        for item in entry.files:
            try:
                where = str(registry.locate(entry.key, item.name))
            except DataError:
                where = "not here"
            print(f"  {item.name} ({item.size:,} bytes): {where}")
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    from engine.data import registry

    keys = [d.key for d in registry.datasets()] if args.all else args.datasets
    if not keys:
        print("name a data set or give --all; see 'python -m engine data list'")
        return 2
    for key in keys:
        paths = registry.fetch(key)
        for path in paths:
            print(f"{key}: {path}")
    return 0


def _cmd_twin(args: argparse.Namespace) -> int:
    from engine.data.twin import make_twin

    twin = make_twin(seed=args.seed)
    out = Path(args.out)
    tmp = out.with_name(out.name + ".part")
    twin.grid.to_netcdf(tmp)
    tmp.replace(out)
    radar_out = out.with_suffix(".radar.csv")
    twin.radar.to_csv(radar_out, index=False)
    print(f"grid: {out} ({twin.grid.sizes['y']} x {twin.grid.sizes['x']} cells)")
    print(f"radar: {radar_out} ({len(twin.radar)} picks)")
    return 0


def _cmd_region(args: argparse.Namespace) -> int:
    from engine.data.grids import read_bedmachine, read_topo_hdf5
    from engine.data.radar import read_radar
    from engine.data.regions import region_from_lonlat_box, window_on_grid

    path = Path(args.grid)
    region = region_from_lonlat_box(*args.box)
    if path.suffix in (".h5", ".hdf5"):
        grid = read_topo_hdf5(path)
    else:
        # Read only the box (plus a cell) of a possibly whole-Greenland file.
        x_min, y_min, x_max, y_max = region.bounds
        pad = 150.0
        grid = read_bedmachine(
            path,
            bounds=(x_min - pad, y_min - pad, x_max + pad, y_max + pad),
            variables=["mask"],
        )
    window = window_on_grid(region, grid)
    print(f"window: rows {window.rows.start}..{window.rows.stop - 1}, "
          f"cols {window.cols.start}..{window.cols.stop - 1}")
    print(f"cells in the region: {window.n_cells:,} of {window.spacing:.0f} m "
          f"({window.area_km2:,.1f} km^2)")
    if args.radar:
        picks, lines = window.count_picks(read_radar(args.radar))
        print(f"radar: {picks} picks on {lines} flight lines")
    return 0


def _cmd_earthdata(args: argparse.Namespace) -> int:
    from engine.data import earthdata
    from engine.data.regions import PRESET_REGIONS, region_from_lonlat_box

    # The region: a preset by name or a longitude/latitude box.
    if args.preset:
        region = region_from_lonlat_box(*PRESET_REGIONS[args.preset], name=args.preset)
    elif args.box:
        region = region_from_lonlat_box(*args.box)
    else:
        print("give --box LON_MIN LAT_MIN LON_MAX LAT_MAX or --preset NAME")
        return 2

    # BedMachine cut to the region, or the radar files that cross it.
    if args.command == "bedmachine":
        print(earthdata.fetch_bedmachine(region))
    else:
        temporal = (args.start, args.end) if args.start or args.end else None
        for path in earthdata.fetch_radar(region, temporal=temporal):
            print(path)
    return 0


def _cmd_jobs(args: argparse.Namespace) -> int:
    from engine.jobs import queue, store, worker

    root = Path(args.root) if getattr(args, "root", None) else None
    if args.command == "scheduler":
        queue.run_scheduler(root, max_parallel=args.max_parallel)
    elif args.command == "run":
        worker.run_job(args.job_id, root)
    elif args.command == "submit":
        params = dict(item.split("=", 1) for item in args.param)
        state = queue.submit(args.task, params, root=root)
        print(state.job_id)
    elif args.command == "cancel":
        state = queue.cancel(args.job_id, root)
        print(f"{state.job_id}: cancel asked ({state.state})")
    else:
        for job in store.list_jobs(root):
            fraction = job.progress.get("fraction")
            done = f" {fraction:.0%}" if isinstance(fraction, float) else ""
            print(f"{job.job_id}  {job.task:12s} {job.state:9s}{done} {job.error}")
    return 0


def _read_bed_grid(path_name: str) -> Any:
    """A 150 m grid from an .h5 file (DeepTopoNet schema) or a NetCDF grid."""
    import xarray as xr

    from engine.data.errors import FileFormatError
    from engine.data.grids import finish_grid, read_bedmachine, read_topo_hdf5

    path = Path(path_name)
    if not path.is_file():
        raise FileFormatError(f"{path}: no such file; check the path")
    if path.suffix.lower() in (".h5", ".hdf5"):
        return read_topo_hdf5(path)
    if path.suffix.lower() in (".nc", ".nc4", ".netcdf"):
        try:
            with xr.open_dataset(path) as ds:
                is_bedmachine = "bed" in ds and "bed_bedmachine" not in ds
        except (OSError, ValueError) as exc:
            raise FileFormatError(
                f"{path.name} is not a readable NetCDF file ({exc}); write it again"
            ) from exc
        if is_bedmachine:
            return read_bedmachine(path)
        return finish_grid(xr.load_dataset(path), origin=path.name)
    raise FileFormatError(
        f"{path.name}: a grid must be an .h5 file in the DeepTopoNet schema or a "
        "NetCDF grid (.nc)"
    )


def _bed_config(args: argparse.Namespace) -> Any:
    """The ExperimentConfig of the bed command's options."""
    from dataclasses import replace

    from engine.bedtopo.experiment import ExperimentConfig
    from engine.bedtopo.splits import SplitConfig

    config = ExperimentConfig.preset(args.preset)
    changes: dict[str, Any] = {"device": args.device}
    if args.factor is not None:
        if config.train.model == "paper" and args.factor != 1:
            from engine.bedtopo.errors import ConfigError

            raise ConfigError(
                "the paper preset predicts on the 150 m grid; use --factor 1 or "
                "another preset"
            )
        changes["factor"] = args.factor
    if args.epochs is not None:
        changes["epochs"] = args.epochs
    split = SplitConfig(kind=args.split, n_folds=args.folds, fold=args.fold)
    extra: dict[str, Any] = {}
    if args.ensemble is not None:
        extra["ensemble"] = args.ensemble
    if args.mc_samples is not None:
        extra["mc_samples"] = args.mc_samples
        if args.mc_samples == 0 and extra.get("ensemble", config.ensemble) == 1:
            extra["calibrate"] = False
    return replace(config, train=replace(config.train, **changes), split=split, **extra)


def _print_epoch(record: dict[str, Any]) -> None:
    """One line per epoch of a training progress record."""
    val = record.get("val_rmse")
    bedmachine = record.get("bedmachine_rmse")
    line = (
        f"epoch {record['epoch']}/{record['epochs']}  loss {record['loss']:.4g}  "
        f"gamma_r {record['gamma_radar']:.2f}"
    )
    if val is not None:
        line += f"  val RMSE {val:.1f} m"
    if bedmachine is not None:
        line += f" (BedMachine {bedmachine:.1f} m)"
    line += f"  {record['seconds']:.0f} s"
    print(line, flush=True)


def _cmd_bed(args: argparse.Namespace) -> int:
    from engine.bedtopo.errors import BedTopoError

    try:
        return _run_bed(args)
    except BedTopoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _run_bed(args: argparse.Namespace) -> int:
    import pandas as pd

    from engine.bedtopo.predict import predict_region, scale_uncertainty
    from engine.bedtopo.predict import write_geotiff, write_netcdf
    from engine.data.radar import read_radar

    # Predict a grid with a saved model (and its saved calibration).
    if args.command == "predict":
        from engine.bedtopo.experiment import load_members

        members = load_members(args.run)
        trained = members[0]
        models = [member.model for member in members]
        grid = _read_bed_grid(args.grid)
        prediction = predict_region(
            models[0] if len(models) == 1 else models,
            grid,
            scaler=trained.scaler,
            mc_samples=args.mc_samples,
            seed=trained.config.seed,
        )
        metrics_path = Path(args.run) / "metrics.json"
        if args.mc_samples and metrics_path.is_file():
            factor = json.loads(metrics_path.read_text()).get("sigma_calibration", 1)
            if factor and factor != 1.0:
                prediction = scale_uncertainty(prediction, float(factor))
        print(f"prediction: {write_netcdf(prediction, args.out)}")
        if args.tif:
            print(f"GeoTIFF: {write_geotiff(prediction, args.tif)}")
        return 0

    # Train only, or the whole experiment.
    grid = _read_bed_grid(args.grid)
    picks = read_radar(args.radar)
    config = _bed_config(args)
    if args.command == "train":
        from engine.bedtopo.experiment import check_inputs
        from engine.bedtopo.splits import SplitConfig
        from engine.bedtopo.training import train

        check_inputs(grid, picks)
        # Every flight line trains but one fold, which early stopping watches.
        validation = SplitConfig(
            kind="lines", n_folds=max(config.validation_folds, 2), fold=0
        )
        result = train(
            grid,
            picks,
            config.train,
            split=validation,
            progress=_print_epoch,
            run_dir=args.out,
        )
        print(f"model: {Path(args.out) / 'model.pt'} (best epoch {result.best_epoch})")
        return 0

    from engine.bedtopo.experiment import run_experiment

    def progress(record: dict[str, Any]) -> None:
        if record["stage"] == "train":
            if config.ensemble > 1 and record["epoch"] == 1:
                print(f"member {record['member'] + 1} of {config.ensemble}")
            _print_epoch(record)
        elif record["stage"] == "baselines" and "method" in record:
            print(f"baseline {record['method']}", flush=True)

    result = run_experiment(grid, picks, config, run_dir=args.out, progress=progress)
    columns = [
        c
        for c in result.table.columns
        if c.startswith(("points.", "fast.rmse", "withheld.", "twin."))
    ]
    with pd.option_context("display.width", 160, "display.max_columns", 40):
        print(result.table[columns].round(3).to_string())
    print(f"sigma calibration: {result.metrics.get('sigma_calibration', 1.0):.3g}")
    print(f"run folder: {args.out}")
    return 0


def _cluster_config(args: argparse.Namespace, method: str) -> Any:
    """The ClusteringConfig of the cluster command's options."""
    from engine.clustering.prepare import PrepareConfig
    from engine.clustering.runner import ClusteringConfig

    prepare = PrepareConfig(
        variables=tuple(args.variables.split(",")) if args.variables else None,
        anomaly=args.anomaly,
        resample="1D" if args.daily else None,
        fill=args.fill,
    )
    return ClusteringConfig(
        method=method,
        k=args.k,
        mode=args.mode,
        prepare=prepare,
        window=args.window,
        step=args.step,
        seeds=args.seeds,
        quick=not args.full,
        workers=args.workers,
    )


def _print_cluster_progress(event: dict[str, Any]) -> None:
    """One line per progress report of a clustering run."""
    extra = "".join(
        f" {key}={event[key]}" for key in ("method", "seed", "epoch") if key in event
    )
    print(f"{event['fraction']:4.0%} {event['stage']}{extra}", flush=True)


def _cmd_cluster(args: argparse.Namespace) -> int:
    import pandas as pd

    from engine.clustering.errors import ClusteringCancelled
    from engine.clustering.errors import ClusteringConfigError, ClusteringInputError
    from engine.clustering.runner import compare_methods, run_clustering
    from engine.data.climate import open_climate_cube

    try:
        with open_climate_cube(args.data) as cube:
            if args.command == "run":
                config = _cluster_config(args, args.method)
                result = run_clustering(
                    cube,
                    config,
                    run_dir=args.out,
                    progress=_print_cluster_progress if args.verbose else None,
                )
                print("metrics (internal scores in the input space):")
                _print_summary(result.metrics, indent=2)
                print(f"run folder: {result.run_dir}")
                return 0
            methods = [name.strip() for name in args.methods.split(",") if name]
            table = compare_methods(cube, _cluster_config(args, methods[0]), methods)
    except (ClusteringInputError, ClusteringConfigError, ClusteringCancelled) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    columns = [c for c in table.columns if c != "space"]
    print("internal scores in the input space; ari/nmi against a known regime")
    with pd.option_context("display.width", 160, "display.max_columns", 40):
        print(table[columns].round(3).to_string())
    return 0


def _add_cluster_parser(subjects: Any) -> None:
    """The ``cluster`` subject: run one method, or compare several."""
    cluster = subjects.add_parser("cluster", help="cluster a climate cube")
    commands = cluster.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run one method and write a run folder")
    run.add_argument("--method", default="hedgtc", help="dsc, hedgtc, dec, ...")
    run.add_argument("--out", required=True, help="run folder")
    run.add_argument("--quiet", dest="verbose", action="store_false")
    evaluate = commands.add_parser("evaluate", help="compare methods' metrics")
    evaluate.add_argument("--methods", default="kmeans,ward,dsc,hedgtc")
    for command in (run, evaluate):
        command.add_argument("--data", required=True, help="NetCDF file or folder")
        command.add_argument("--k", type=int, default=7, help="number of clusters")
        command.add_argument("--daily", action="store_true", help="daily means")
        command.add_argument(
            "--anomaly", choices=("diurnal", "dayofyear", "month"), default=None
        )
        command.add_argument("--fill", choices=("mask", "mean"), default="mask")
        command.add_argument("--variables", help="comma-separated names")
        command.add_argument(
            "--mode", choices=("temporal", "spatial"), default="temporal"
        )
        command.add_argument("--window", type=int, default=24, help="spatial, steps")
        command.add_argument("--step", type=int, default=24, help="spatial, steps")
        command.add_argument("--seeds", type=int, default=3, help="for stability")
        command.add_argument(
            "--workers",
            type=int,
            default=None,
            help="Dask workers for HEDGTC's members (default: 0, 2 with --full)",
        )
        command.add_argument("--full", action="store_true", help="longer training")
        command.set_defaults(func=_cmd_cluster)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m engine``."""
    parser = argparse.ArgumentParser(prog="python -m engine", description=__doc__)
    subjects = parser.add_subparsers(dest="subject", required=True)

    data = subjects.add_parser("data", help="data files, the registry, twins")
    commands = data.add_subparsers(dest="command", required=True)

    info = commands.add_parser("info", help="print what a file holds")
    info.add_argument("file")
    info.add_argument("--json", action="store_true", help="print JSON")
    info.set_defaults(func=_cmd_info)

    listing = commands.add_parser("list", help="list the registered data sets")
    listing.set_defaults(func=_cmd_list)

    fetch = commands.add_parser("fetch", help="download data sets into the cache")
    fetch.add_argument("datasets", nargs="*")
    fetch.add_argument("--all", action="store_true")
    fetch.set_defaults(func=_cmd_fetch)

    twin = commands.add_parser("twin", help="write a synthetic twin")
    twin.add_argument("--seed", type=int, default=0)
    twin.add_argument("--out", default="twin.nc")
    twin.set_defaults(func=_cmd_twin)

    region = commands.add_parser("region", help="lay a lon/lat box on a grid")
    region.add_argument("grid", help="an .h5 grid or a BedMachine .nc file")
    region.add_argument(
        "--box",
        nargs=4,
        type=float,
        required=True,
        metavar=("LON_MIN", "LAT_MIN", "LON_MAX", "LAT_MAX"),
    )
    region.add_argument("--radar", help="radar file to count picks and lines")
    region.set_defaults(func=_cmd_region)

    from engine.data.regions import PRESET_REGIONS

    for name, what in (
        ("bedmachine", "cut BedMachine Greenland to a region (NASA Earthdata)"),
        ("radar", "download IceBridge radar crossing a region (NASA Earthdata)"),
    ):
        fetcher = commands.add_parser(name, help=what)
        fetcher.add_argument(
            "--box",
            nargs=4,
            type=float,
            metavar=("LON_MIN", "LAT_MIN", "LON_MAX", "LAT_MAX"),
        )
        fetcher.add_argument("--preset", choices=sorted(PRESET_REGIONS))
        if name == "radar":
            fetcher.add_argument("--start", help="first date, YYYY-MM-DD")
            fetcher.add_argument("--end", help="last date, YYYY-MM-DD")
        fetcher.set_defaults(func=_cmd_earthdata)

    jobs = subjects.add_parser("jobs", help="the job queue")
    jobs.add_argument("--root", help="runs folder (default: $GREENBED_RUNS_DIR)")
    job_commands = jobs.add_subparsers(dest="command", required=True)
    job_commands.add_parser("list", help="list jobs, newest first")
    submit = job_commands.add_parser("submit", help="queue a registered task")
    submit.add_argument("task")
    submit.add_argument("--param", action="append", default=[], help="KEY=VALUE")
    cancel = job_commands.add_parser("cancel", help="cancel a job")
    cancel.add_argument("job_id")
    run = job_commands.add_parser("run", help="run one job (the queue does this)")
    run.add_argument("job_id")
    run.add_argument("--root", help=argparse.SUPPRESS)
    scheduler = job_commands.add_parser("scheduler", help="run the queue")
    scheduler.add_argument("--root", help=argparse.SUPPRESS)
    scheduler.add_argument("--max-parallel", type=int, default=None)
    jobs.set_defaults(func=_cmd_jobs)

    bed = subjects.add_parser("bed", help="DeepTopoNet bed topography")
    bed_commands = bed.add_subparsers(dest="command", required=True)
    for name, what in (
        ("evaluate", "train, predict and score against the baselines on a split"),
        ("train", "train a model on all flight lines but a validation fold"),
    ):
        command = bed_commands.add_parser(name, help=what)
        command.add_argument("--grid", required=True, help=".h5 or .nc grid")
        command.add_argument("--radar", required=True, help=".mat, .csv radar")
        command.add_argument("--out", required=True, help="run folder")
        command.add_argument(
            "--preset", choices=("quick", "standard", "paper"), default="quick"
        )
        command.add_argument("--split", choices=("lines", "blocks"), default="lines")
        command.add_argument("--folds", type=int, default=4)
        command.add_argument("--fold", type=int, default=0)
        command.add_argument("--factor", type=int, choices=(1, 2, 3))
        command.add_argument("--epochs", type=int, help="largest number of epochs")
        command.add_argument("--mc-samples", type=int, help="MC-dropout passes")
        command.add_argument(
            "--ensemble", type=int, help="members of a cross-fitted ensemble"
        )
        command.add_argument("--device", default="auto", help="auto, cpu, cuda")
        command.set_defaults(func=_cmd_bed)
    predict = bed_commands.add_parser("predict", help="predict a grid with a run")
    predict.add_argument("--run", required=True, help="run folder with model.pt")
    predict.add_argument("--grid", required=True, help=".h5 or .nc grid")
    predict.add_argument("--out", required=True, help="output NetCDF file")
    predict.add_argument("--tif", help="also write the bed as a GeoTIFF")
    predict.add_argument("--mc-samples", type=int, default=20)
    predict.set_defaults(func=_cmd_bed)
    _add_cluster_parser(subjects)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; errors of the data layer print without a traceback."""
    args = build_parser().parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            return int(args.func(args))
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
