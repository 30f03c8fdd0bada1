"""Time and worker memory of large-area prediction on Dask, as a table.

A synthetic 150 m grid (:class:`engine.bedtopo.scale.SyntheticGridSource`,
computed per window on the workers) of growing size goes through
:func:`engine.bedtopo.scale.predict_large` at factor 3 (50 m output) with
an untrained DeepTopoNet of the quick preset's widths, on a LocalCluster of
1 and then 2 one-thread worker processes. For each run:

- wall time, and time per input cell (flat when the cost is linear);
- peak resident memory of the worker processes (``ru_maxrss``, returned
  with each tile; the workers are restarted before each run so that the
  peak is that run's, and flat when memory is bounded per worker);
- speed-up of 2 workers over 1;
- and from the largest size, the projected time for all of Greenland at
  150 m -> 50 m (18346 x 10218 input cells) on 1 and 2 CPU workers and on
  one GPU, the last from an *assumed* GPU speed-up, not a measurement.

Run from the repository root::

    .venv/bin/python benchmarks/scale.py                 # 256^2 .. 2048^2
    .venv/bin/python benchmarks/scale.py --sizes 256 512 # quicker
    .venv/bin/python benchmarks/scale.py --full          # adds all Greenland
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from engine.bedtopo.features import FeatureConfig
from engine.bedtopo.models import DeepTopoNet, DeepTopoNetConfig
from engine.bedtopo.scale import (
    ModelSpec,
    SyntheticGridSource,
    TileReport,
    fit_scaler,
    predict_large,
)

#: BedMachine Greenland v5: rows x columns of 150 m cells.
GREENLAND = (18346, 10218)

#: Residual block widths of the quick training preset.
QUICK_WIDTHS = (16, 32, 32, 64, 64)


def make_spec(widths: tuple[int, ...], factor: int) -> ModelSpec:
    """An untrained DeepTopoNet (non-zero head) and a scaler of the grid."""
    source = SyntheticGridSource(512, 512, seed=0)
    scaler = fit_scaler(source, config=FeatureConfig(include_bedmachine=True))
    torch.manual_seed(0)
    config = DeepTopoNetConfig(
        in_channels=len(scaler.channels),
        widths=widths,
        factor=factor,
        zero_init_head=False,
    )
    return ModelSpec.from_model(DeepTopoNet(config), scaler)


def run_once(
    n_workers: int, spec: ModelSpec, shape: tuple[int, int], args, folder: Path
) -> dict:
    """Start a cluster, warm its workers up, then time one prediction."""
    from distributed import Client

    from engine.dask_local import local_cluster

    # Fresh worker processes, so that ru_maxrss is this run's peak.
    with local_cluster(n_workers) as cluster, Client(cluster) as client:
        return _timed(client, spec, shape, args, folder)


def _timed(client, spec: ModelSpec, shape: tuple[int, int], args, folder: Path) -> dict:
    """A tiny warm-up run (imports, model build), then the timed run."""
    predict_large(
        SyntheticGridSource(32, 32),
        spec,
        out_path=folder / "warm.nc",
        tile=args.tile,
        factor=args.factor,
        client=client,
    )

    reports: list[TileReport] = []
    source = SyntheticGridSource(*shape, seed=1)
    start = time.perf_counter()
    path = predict_large(
        source,
        spec,
        out_path=folder / f"bed_{shape[0]}x{shape[1]}.nc",
        tile=args.tile,
        factor=args.factor,
        client=client,
        complevel=args.complevel,
        tile_report=reports.append,
    )
    wall = time.perf_counter() - start
    size_mb = path.stat().st_size / 1e6
    path.unlink()
    cells = shape[0] * shape[1]
    return {
        "shape": shape,
        "tiles": len(reports),
        "wall_s": wall,
        "us_per_cell": 1e6 * wall / cells,
        "peak_mb": max(r.peak_rss_bytes for r in reports) / 2**20,
        "write_s": sum(r.write_seconds for r in reports),
        "worker_s": sum(r.seconds for r in reports),
        "file_mb": size_mb,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024, 2048])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--tile", type=int, default=256)
    parser.add_argument("--factor", type=int, default=3)
    parser.add_argument("--complevel", type=int, default=0)
    parser.add_argument(
        "--gpu-speedup",
        type=float,
        default=30.0,
        help="assumed speed of one GPU over one CPU worker (a projection)",
    )
    parser.add_argument("--full", action="store_true", help="also run all Greenland")
    args = parser.parse_args()

    spec = make_spec(QUICK_WIDTHS, args.factor)
    shapes = [(n, n) for n in args.sizes] + ([GREENLAND] if args.full else [])
    rows: list[tuple[int, dict]] = []
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp)
        for n_workers in args.workers:
            for shape in shapes:
                # One fresh cluster per run.
                row = run_once(n_workers, spec, shape, args, folder)
                rows.append((n_workers, row))
                print(
                    f"  done {shape[0]}x{shape[1]} on {n_workers} worker(s): "
                    f"{row['wall_s']:.1f} s",
                    flush=True,
                )

    # Table: one line per size and worker count.
    one = {r["shape"]: r for w, r in rows if w == 1}
    print()
    print(
        f"DeepTopoNet widths {QUICK_WIDTHS}, factor {args.factor} "
        f"({150 // args.factor} m output), tile {args.tile}, zlib {args.complevel}, "
        f"torch {torch.__version__}, 1 thread per worker"
    )
    header = (
        f"{'input cells':>13} {'workers':>7} {'tiles':>5} {'wall s':>8} "
        f"{'us/cell':>8} {'peak MB/worker':>14} {'write s':>7} {'file MB':>7} "
        f"{'speed-up':>8}"
    )
    print(header)
    print("-" * len(header))
    for n_workers, row in rows:
        base = one.get(row["shape"])
        speedup = base["wall_s"] / row["wall_s"] if base and n_workers > 1 else 1.0
        shape = f"{row['shape'][0]}x{row['shape'][1]}"
        print(
            f"{shape:>13} {n_workers:>7} {row['tiles']:>5} {row['wall_s']:>8.1f} "
            f"{row['us_per_cell']:>8.2f} {row['peak_mb']:>14.0f} "
            f"{row['write_s']:>7.1f} {row['file_mb']:>7.1f} {speedup:>7.2f}x"
        )

    # Projection to all Greenland from the largest size of each count; it
    # needs the one-worker runs as its baseline.
    if not one:
        print("\nNo one-worker run: no projection (add --workers 1).")
        return
    cells = GREENLAND[0] * GREENLAND[1]
    largest = max(one)
    per_cell = {w: r["us_per_cell"] for w, r in rows if r["shape"] == largest}
    write_per_cell = one[largest]["write_s"] / (largest[0] * largest[1])
    print()
    print(
        f"Projected all Greenland ({GREENLAND[0]} x {GREENLAND[1]} cells at 150 m "
        f"-> {args.factor * GREENLAND[0]} x {args.factor * GREENLAND[1]} at "
        f"{150 // args.factor} m), from the {largest[0]}x{largest[1]} runs:"
    )
    for n_workers, us in sorted(per_cell.items()):
        hours = us * cells / 1e6 / 3600
        print(f"  {n_workers} CPU worker(s): {hours:6.2f} h (measured)")
    gpu = per_cell[1] * cells / 1e6 / args.gpu_speedup
    floor = write_per_cell * cells
    print(
        f"  1 GPU: {max(gpu, floor) / 3600:6.2f} h - a PROJECTION, not measured: "
        f"1 CPU worker / {args.gpu_speedup:g} (assumed GPU speed-up), but not "
        f"below the client's measured NetCDF write time ({floor / 3600:.2f} h)"
    )


if __name__ == "__main__":
    main()
