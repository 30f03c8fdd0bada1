"""CPU time and memory of the DeepTopoNet engine, as a table.

- training time of the quick and standard presets on the Helheim grid
  (300 x 200 cells of 150 m, 4-fold line split, fold 0), torch on 2
  threads;
- prediction time of a 100 x 100 km region at 50 m (a synthetic twin of
  667 x 667 cells of 150 m, output 2001 x 2001 cells) with the standard
  model's architecture, deterministic and with MC dropout;
- peak resident memory of the process (``resource.getrusage``).

Each row carries its target (2 minutes for the quick training, 10 for the
standard one, 30 s for the prediction, 4 GB of memory) and the ratio of
the measurement to it: below 1 meets it.

Run from the repository root::

    GREENBED_DATA_DIR=<data folder> .venv/bin/python benchmarks/bed_speed.py
    ... benchmarks/bed_speed.py --skip standard   # leave a preset out
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings

import pandas as pd
import torch

from engine.bedtopo.features import FeatureScaler, raw_features
from engine.bedtopo.models import DeepTopoNet, DeepTopoNetConfig
from engine.bedtopo.predict import predict_region
from engine.bedtopo.splits import SplitConfig
from engine.bedtopo.training import TrainConfig, train
from engine.data.errors import DataWarning
from engine.data.grids import read_topo_hdf5
from engine.data.radar import read_radar
from engine.data.registry import locate
from engine.data.twin import make_twin


def peak_memory_gb() -> float:
    """Peak resident memory of this process so far, GB (Linux: kB units)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def train_time(preset: str) -> dict[str, object]:
    """Seconds to train a preset on Helheim, and its epochs."""
    grid = read_topo_hdf5(locate("helheim", "subdomain_data.h5"))
    picks = read_radar(locate("helheim", "flightTracks.mat"))
    config = getattr(TrainConfig, preset)(device="cpu", threads=2)
    start = time.perf_counter()
    result = train(grid, picks, config, split=SplitConfig())
    seconds = time.perf_counter() - start
    epochs = len(result.history)
    return {
        "task": f"train {preset} (Helheim)",
        "seconds": seconds,
        "detail": f"{epochs} epochs, {seconds / max(epochs, 1):.1f} s/epoch, best "
        f"val RMSE {min(r['val_rmse'] for r in result.history):.1f} m",
        "peak_gb": peak_memory_gb(),
    }


def predict_time(mc_samples: int) -> dict[str, object]:
    """Seconds to predict a 100 x 100 km region at 50 m."""
    twin = make_twin(seed=0, ny=667, nx=667)
    config = TrainConfig.standard()
    raw, channels, extent = raw_features(twin.grid, config=config.feature_config())
    scaler = FeatureScaler.fit(raw, channels, trend_extent=extent)
    model = DeepTopoNet(
        DeepTopoNetConfig(
            in_channels=len(channels), widths=config.widths, factor=3
        )
    )
    torch.set_num_threads(2)
    start = time.perf_counter()
    prediction = predict_region(model, twin.grid, scaler=scaler, mc_samples=mc_samples)
    seconds = time.perf_counter() - start
    return {
        "task": f"predict 100 x 100 km at 50 m, mc_samples={mc_samples}",
        "seconds": seconds,
        "detail": f"{prediction.sizes['y']} x {prediction.sizes['x']} cells out",
        "peak_gb": peak_memory_gb(),
    }


#: Targets of the rows, seconds, by the start of the task's name.
TARGETS_S = {"train quick": 120.0, "train standard": 600.0, "predict": 30.0}

#: Peak memory target, GB.
TARGET_GB = 4.0


def with_targets(table: pd.DataFrame) -> pd.DataFrame:
    """The table with each row's target and the measurement over it."""
    table = table.copy()
    table["target_s"] = [
        next(t for name, t in TARGETS_S.items() if task.startswith(name))
        for task in table["task"]
    ]
    table["seconds/target"] = table["seconds"] / table["target_s"]
    table["peak/target"] = table["peak_gb"] / TARGET_GB
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip", nargs="*", default=[],
                        help="quick standard predict mc")
    args = parser.parse_args()
    warnings.simplefilter("ignore", DataWarning)
    rows = []
    for preset in ("quick", "standard"):
        if preset not in args.skip:
            rows.append(train_time(preset))
            print(rows[-1], flush=True)
    if "predict" not in args.skip:
        rows.append(predict_time(0))
        print(rows[-1], flush=True)
    if "mc" not in args.skip:
        rows.append(predict_time(5))
        print(rows[-1], flush=True)
    pd.set_option("display.width", 200)
    print(with_targets(pd.DataFrame(rows)).round(2).to_string(index=False))


if __name__ == "__main__":
    main()
