"""The ``cluster`` subject of the command line, end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.clustering.runner import load_clustering
from engine.clustering.synthetic import make_planted


@pytest.fixture(scope="module")
def cube_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny planted cube written as one NetCDF file."""
    planted = make_planted(seed=0, n_time=40, n_lat=6, n_lon=8, n_regimes=3)
    path = tmp_path_factory.mktemp("cube") / "planted.nc"
    planted.cube.drop_vars("regime").to_netcdf(path)
    return path


def test_run_writes_a_run_folder(
    cube_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Progress lines, the metrics, and a folder load_clustering reads."""
    out = tmp_path / "run"
    code = main(
        ["cluster", "run", "--data", str(cube_file), "--method", "kmeans",
         "--k", "3", "--seeds", "2", "--out", str(out)]
    )
    printed = capsys.readouterr().out

    assert code == 0
    assert "100% done" in printed
    assert "silhouette_cosine" in printed and "input space" in printed
    result = load_clustering(out)
    assert result.labels.sizes["time"] == 40
    assert set(np.unique(result.labels.values)) == {0, 1, 2}


def test_evaluate_prints_the_table(
    cube_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One row per method."""
    code = main(
        ["cluster", "evaluate", "--data", str(cube_file), "--k", "3",
         "--seeds", "1", "--methods", "kmeans,ward"]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert "kmeans" in printed and "ward" in printed
    assert "davies_bouldin" in printed


def test_bad_inputs_give_clear_errors(
    cube_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """k < 2 and more clusters than steps exit 1 with a message."""
    out = str(tmp_path / "run")
    assert main(["cluster", "run", "--data", str(cube_file), "--k", "1",
                 "--out", out]) == 1
    assert "at least 2 clusters" in capsys.readouterr().err
    assert main(["cluster", "run", "--data", str(cube_file), "--k", "50",
                 "--method", "kmeans", "--out", out]) == 1
    assert "40 time steps for 50 clusters" in capsys.readouterr().err
