"""Clustering quality and run time: WFDE5 and planted regimes.

Run from the repository root::

    .venv/bin/python benchmarks/cluster_quality.py            # quick
    .venv/bin/python benchmarks/cluster_quality.py --full     # the targets
    .venv/bin/python benchmarks/cluster_quality.py --longer   # longer presets
    ... cluster_quality.py --methods kmeans ward hedgtc       # a subset

Two parts, each printed as tables:

1. WFDE5 UK, January 2017 (k = 7): every method's internal scores, all in
   the **input space** (prepared samples), for hourly and daily steps,
   each with sea masked (``fill="mask"``) and mean-filled
   (``fill="mean"``), with the ratio of each score to k-means' in the
   same run;
2. planted regimes (``make_planted``; the default noise ratio 2.2 is
   where k-means' mean ARI over the ten data seeds of ``--full`` is about
   0.5): ARI and NMI against the truth, stability (mean pairwise ARI
   over the method's seeds), run time, per data seed and averaged, and
   how many data seeds HEDGTC beat each single method on.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from engine.clustering.prepare import PrepareConfig
from engine.clustering.runner import ClusteringConfig, compare_methods
from engine.clustering.synthetic import make_planted
from engine.data.climate import open_climate_cube


def wfde5_folder() -> Path:
    """The WFDE5 demo files: the data directory or the cache, as the app."""
    from engine.data.registry import locate

    return locate("wfde5_uk_201701", "air_temperature.nc").parent


SCORES = ["silhouette_cosine", "davies_bouldin", "calinski_harabasz", "stability"]


def wfde5_tables(
    methods: list[str], *, seeds: int, hourly: bool, quick: bool = True
) -> None:
    """Scores of every method on WFDE5, hourly and daily, mask and fill."""
    steps = [("daily", "1D")] + ([("hourly", None)] if hourly else [])
    with open_climate_cube(wfde5_folder()) as cube:
        cube = cube.load()
        for name, resample in steps:
            for fill in ("mask", "mean"):
                prepare = PrepareConfig(anomaly="diurnal", resample=resample, fill=fill)
                config = ClusteringConfig(
                    k=7, prepare=prepare, seeds=seeds, quick=quick
                )
                table = compare_methods(cube, config, methods)
                ratios = table[["silhouette_cosine", "davies_bouldin"]].div(
                    table.loc["kmeans", ["silhouette_cosine", "davies_bouldin"]]
                )
                print(
                    f"\nWFDE5 {name}, fill={fill}, k=7 (input-space scores, "
                    f"{'quick' if quick else 'longer'} presets)"
                )
                shown = table[SCORES + ["seconds"]].join(ratios.add_suffix("/kmeans"))
                print(shown.round(3).to_string(), flush=True)


def planted_tables(
    methods: list[str],
    *,
    data_seeds: int,
    seeds: int,
    noise: float,
    quick: bool = True,
) -> None:
    """ARI, NMI, stability and time per method over planted data seeds."""
    rows = []
    for data_seed in range(data_seeds):
        planted = make_planted(seed=data_seed, noise_ratio=noise)
        config = ClusteringConfig(k=4, seeds=seeds, quick=quick)
        table = compare_methods(planted.cube, config, methods)
        table["data_seed"] = data_seed
        rows.append(table.reset_index())
        print(
            f"data seed {data_seed}: "
            + ", ".join(f"{m} {table.loc[m, 'ari']:.3f}" for m in methods),
            flush=True,
        )
    table = pd.concat(rows)
    summary = table.groupby("method")[["ari", "nmi", "stability", "seconds"]].agg(
        ["mean", "min"]
    )
    print(f"\nPlanted regimes, noise_ratio={noise}, {data_seeds} data seeds, "
          f"{seeds} method seeds each (ARI/NMI against the truth)")
    print(summary.round(3).to_string())

    # Paired: on how many data seeds HEDGTC beat each method.
    if "hedgtc" in methods:
        wide = table.pivot(index="data_seed", columns="method", values="ari")
        for method in methods:
            if method != "hedgtc":
                wins = int((wide["hedgtc"] > wide[method]).sum())
                print(f"HEDGTC ARI > {method}: {wins}/{len(wide)} data seeds")
        kmeans = table[table["method"] == "kmeans"]["ari"].to_numpy()
        hedgtc = table[table["method"] == "hedgtc"]["ari"].to_numpy()
        print(f"HEDGTC / k-means mean ARI: {hedgtc.mean() / kmeans.mean():.2f}")
    kmeans_mean = table.loc[table["method"] == "kmeans", "ari"].mean()
    print(f"k-means mean ARI at noise_ratio={noise}: {kmeans_mean:.3f} (aim: ~0.5)")


def main() -> None:
    """Parse the options and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the target sizes")
    parser.add_argument("--noise", type=float, default=2.2)
    parser.add_argument("--skip-wfde5", action="store_true")
    parser.add_argument("--skip-planted", action="store_true")
    parser.add_argument(
        "--longer",
        action="store_true",
        help="longer presets of DSC, DEC and HEDGTC (HEDGTC with DEC and DSC members)",
    )
    parser.add_argument("--methods", nargs="*", help="a subset of the methods")
    args = parser.parse_args()
    methods = args.methods or ["kmeans", "ward", "gmm", "dec", "dsc", "hedgtc"]
    quick = not args.longer
    start = time.perf_counter()
    if not args.skip_planted:
        planted_tables(
            methods,
            data_seeds=10 if args.full else 3,
            seeds=5 if args.full else 2,
            noise=args.noise,
            quick=quick,
        )
    if not args.skip_wfde5:
        wfde5_tables(
            methods
            if args.full or args.methods
            else ["kmeans", "ward", "gmm", "dsc", "hedgtc"],
            seeds=3 if args.full else 1,
            hourly=True,
            quick=quick,
        )
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
