"""Command line of the engine: ``python -m engine <subject> <command>``.

Examples::

    python -m engine data info subdomain_data.h5
    python -m engine data list
    python -m engine data fetch helheim
    python -m engine data twin --seed 3 --out twin.nc
    python -m engine data region subdomain_data.h5 --box -38.9 66.4 -38.5 66.6
    python -m engine data bedmachine --preset "Upernavik Isstrom"
    python -m engine jobs list
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
