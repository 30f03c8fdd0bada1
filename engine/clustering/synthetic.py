"""Seeded synthetic climate cubes with planted weather regimes.

A planted set is a small made-up climate cube in which the answer is known:
every time step belongs to one of ``K`` regimes, each regime is a fixed
spatial pattern per variable, and the step's maps are that pattern plus
spatially smooth noise. A clustering method run on the cube can therefore be
scored against the true regime of every step (ARI, NMI), which the real
ERA5 or WFDE5 cubes cannot offer.

The set is built in four steps, each drawn from its own child stream of
``numpy.random.SeedSequence(seed)``, so that the same seed always gives the
same arrays and changing one setting (the noise ratio, say) does not redraw
the others (the patterns, the regime sequence):

1. the land mask: smoothed white noise thresholded at the quantile that
   leaves ``land_fraction`` of the cells as land, which gives blob-shaped
   coasts and islands; the other cells are sea (``NaN``);
2. the regime patterns: per regime and variable, a large-scale gradient in
   a random direction plus a few Gaussian blobs of random centre, width and
   sign, standardised to zero mean and unit standard deviation over land;
3. the regime sequence: a Markov chain that keeps the current regime with
   probability ``stay_probability`` and otherwise jumps to one of the other
   regimes at random, so regimes last ``1 / (1 - stay_probability)`` steps
   on average;
4. the noise: white noise smoothed with a Gaussian of ``noise_length``
   cells, scaled to a standard deviation of ``noise_ratio`` (the pattern
   has a standard deviation of 1 over land, so ``noise_ratio`` is the
   noise-to-signal ratio of standard deviations).

Each variable is then given a plausible physical offset and scale (2 m
temperature around 285 K, surface pressure around 1010 hPa, ...), so the
cube looks like the real ones and the preparation step has to standardise
it.

Typical use::

    from engine.clustering.synthetic import PlantedConfig, make_planted

    planted = make_planted(PlantedConfig(seed=3, noise_ratio=0.5))
    planted.cube["t2m"]          # (time, lat, lon) K, NaN over sea
    planted.regime               # (time,) true regime per step
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr
from scipy import ndimage

from engine.clustering.errors import ClusteringConfigError

__all__ = [
    "PLANTED_VARIABLES",
    "PlantedConfig",
    "PlantedSet",
    "make_planted",
    "run_lengths",
]

#: Variables of a planted cube, in order: name, units, CF standard name,
#: long name, physical offset and physical scale of one standard deviation.
PLANTED_VARIABLES: tuple[tuple[str, str, str, str, float, float], ...] = (
    ("t2m", "K", "air_temperature", "2 m air temperature", 285.0, 4.0),
    ("sp", "Pa", "surface_air_pressure", "surface pressure", 101000.0, 900.0),
    ("u10", "m s-1", "eastward_wind", "10 m eastward wind", 2.0, 4.0),
    ("v10", "m s-1", "northward_wind", "10 m northward wind", 0.0, 4.0),
    (
        "sshf",
        "W m-2",
        "surface_upward_sensible_heat_flux",
        "surface sensible heat flux",
        -20.0,
        30.0,
    ),
    (
        "slhf",
        "W m-2",
        "surface_upward_latent_heat_flux",
        "surface latent heat flux",
        -80.0,
        40.0,
    ),
    ("d2m", "K", "dew_point_temperature", "2 m dew point temperature", 280.0, 3.0),
)

# Gaussian blobs added to the gradient of every regime pattern.
_BLOBS_PER_PATTERN = 3


@dataclass(frozen=True)
class PlantedConfig:
    """Settings of a planted-regime cube.

    Parameters
    ----------
    seed
        Seed of every random draw; the same seed gives the same cube.
    n_time
        Number of time steps (samples).
    n_lat, n_lon
        Grid size in cells, at least 2 each.
    n_variables
        Number of fields, 1 to ``len(PLANTED_VARIABLES)`` (7); the first
        ``n_variables`` of :data:`PLANTED_VARIABLES` are used.
    n_regimes
        Number of planted regimes ``K``.
    stay_probability
        Probability that a step keeps the previous step's regime, in
        [0, 1); the mean regime duration is ``1 / (1 - stay_probability)``
        steps.
    noise_ratio
        Standard deviation of the noise over that of the patterns (which
        is 1 over land), at least 0.
    land_fraction
        Share of the cells that are land, in (0, 1]; the rest is sea and
        ``NaN`` in every field.
    noise_length
        Standard deviation, in cells, of the Gaussian that smooths the
        noise; 0 gives white noise. Smooth noise is harder to separate
        from the patterns than white noise of the same variance.
    start, freq
        First time step and pandas frequency of the time axis.
    south, west, spacing
        Centre of the south-west cell and cell size, in degrees; the
        default grid starts at 33 N, 33 W (the north-east Atlantic box
        of DSC) at 0.25 degrees.
    """

    seed: int = 0
    n_time: int = 200
    n_lat: int = 16
    n_lon: int = 20
    n_variables: int = 3
    n_regimes: int = 4
    stay_probability: float = 0.8
    noise_ratio: float = 0.5
    land_fraction: float = 0.6
    noise_length: float = 2.0
    start: str = "2021-01-01"
    freq: str = "1D"
    south: float = 33.0
    west: float = -33.0
    spacing: float = 0.25

    def __post_init__(self) -> None:
        """Check every setting, naming the bad one and its range."""
        # Sizes.
        checks = [
            (self.n_time >= 1, "n_time must be at least 1"),
            (self.n_lat >= 2 and self.n_lon >= 2, "n_lat and n_lon must be >= 2"),
            (self.n_regimes >= 1, "n_regimes must be at least 1"),
            (
                1 <= self.n_variables <= len(PLANTED_VARIABLES),
                f"n_variables must be 1..{len(PLANTED_VARIABLES)}",
            ),
        ]

        # Probabilities and ratios.
        checks += [
            (0.0 <= self.stay_probability < 1.0, "stay_probability must be in [0, 1)"),
            (self.noise_ratio >= 0.0, "noise_ratio must be >= 0"),
            (0.0 < self.land_fraction <= 1.0, "land_fraction must be in (0, 1]"),
            (self.noise_length >= 0.0, "noise_length must be >= 0"),
        ]

        # Grid placement.
        east = self.west + self.spacing * (self.n_lon - 1)
        north = self.south + self.spacing * (self.n_lat - 1)
        checks += [
            (self.spacing > 0.0, "spacing must be positive"),
            (-180.0 <= self.west and east <= 180.0, "lon must stay in -180..180"),
            (-90.0 <= self.south and north <= 90.0, "lat must stay in -90..90"),
        ]
        for ok, message in checks:
            if not ok:
                raise ClusteringConfigError(f"PlantedConfig: {message}")


@dataclass(frozen=True)
class PlantedSet:
    """A planted-regime cube and its truth.

    Attributes
    ----------
    cube
        Climate cube (see ``engine/data/CONVENTIONS.md``): dims
        ``("time", "lat", "lon")``, one variable per field with ``units``,
        ``standard_name`` and ``long_name``, ``NaN`` over sea. The true
        regime is also attached as an integer coordinate ``regime`` on
        ``time``.
    regime
        True regime of each time step, shape ``(time,)``, int64 in
        ``0 .. n_regimes - 1``.
    patterns
        Standardised regime patterns, shape
        ``(n_regimes, n_variables, lat, lon)``, unitless, ``NaN`` over sea.
    land
        Land mask, shape ``(lat, lon)``, ``True`` on land.
    config
        The settings the set was made with.
    """

    cube: xr.Dataset
    regime: np.ndarray
    patterns: np.ndarray
    land: np.ndarray
    config: PlantedConfig


def make_planted(
    config: PlantedConfig | None = None, **overrides: object
) -> PlantedSet:
    """Make a seeded climate cube with planted, persistent regimes.

    Parameters
    ----------
    config
        Settings; ``None`` uses the defaults of :class:`PlantedConfig`.
    **overrides
        Fields of :class:`PlantedConfig` to change, as a shortcut:
        ``make_planted(seed=3, noise_ratio=1.0)``.

    Returns
    -------
    PlantedSet
        The cube (``(time, lat, lon)``, physical units, ``NaN`` sea), the
        true regime per step, the standardised patterns and the land mask.

    Raises
    ------
    ClusteringConfigError
        A setting is out of range or not a field of :class:`PlantedConfig`.
    """
    # Settings, with keyword overrides checked against the dataclass.
    config = config or PlantedConfig()
    if overrides:
        known = {field.name for field in dataclasses.fields(PlantedConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ClusteringConfigError(
                f"unknown PlantedConfig field(s) {unknown}; known: {sorted(known)}"
            )
        config = dataclasses.replace(config, **overrides)  # type: ignore

    # One independent random stream per step.
    land_rng, pattern_rng, regime_rng, noise_rng = (
        np.random.default_rng(child)
        for child in np.random.SeedSequence(config.seed).spawn(4)
    )

    # Steps 1-3: land mask, regime patterns, regime sequence.
    land = _land_mask(config, land_rng)
    patterns = _regime_patterns(config, land, pattern_rng)
    regime = _regime_sequence(config, regime_rng)

    # Step 4: the regime pattern of each step plus smooth noise.
    noise = _smooth_noise(config, noise_rng)
    anomaly = patterns[regime] + config.noise_ratio * noise
    anomaly[:, :, ~land] = np.nan

    return PlantedSet(
        cube=_as_cube(config, anomaly, regime),
        regime=regime,
        patterns=patterns,
        land=land,
        config=config,
    )


def run_lengths(labels: np.ndarray) -> np.ndarray:
    """Lengths of the runs of equal consecutive labels.

    Parameters
    ----------
    labels
        Label per time step, shape ``(time,)``.

    Returns
    -------
    numpy.ndarray
        Length of each run in steps, in time order, int64; their sum is
        ``len(labels)``.

    Examples
    --------
    >>> run_lengths(np.array([0, 0, 1, 1, 1, 0])).tolist()
    [2, 3, 1]
    """
    # Positions where the label changes, then the gaps between them.
    labels = np.asarray(labels)
    if labels.size == 0:
        return np.zeros(0, dtype=np.int64)
    changes = np.flatnonzero(labels[1:] != labels[:-1]) + 1
    edges = np.concatenate([[0], changes, [labels.size]])
    return np.diff(edges).astype(np.int64)


# ---------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------


def _land_mask(config: PlantedConfig, rng: np.random.Generator) -> np.ndarray:
    """Blob-shaped land: smoothed noise above a quantile, shape (lat, lon)."""
    # A smooth random field with features about a third of the grid wide.
    shape = (config.n_lat, config.n_lon)
    field = ndimage.gaussian_filter(
        rng.standard_normal(shape), sigma=max(shape) / 6.0, mode="wrap"
    )

    # Threshold it so that land_fraction of the cells are land.
    if config.land_fraction >= 1.0:
        return np.ones(shape, dtype=bool)
    threshold = np.quantile(field, 1.0 - config.land_fraction)
    land = field > threshold

    # Keep at least one land cell, however small the fraction.
    if not land.any():
        land[np.unravel_index(np.argmax(field), shape)] = True
    return land


def _regime_patterns(
    config: PlantedConfig, land: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Standardised patterns, shape (regime, variable, lat, lon)."""
    # Normalised coordinates in [-1, 1] across the grid.
    rows = np.linspace(-1.0, 1.0, config.n_lat)[:, None]
    cols = np.linspace(-1.0, 1.0, config.n_lon)[None, :]

    shape = (config.n_regimes, config.n_variables, config.n_lat, config.n_lon)
    patterns = np.empty(shape)
    for k in range(config.n_regimes):
        for v in range(config.n_variables):
            # A large-scale gradient in a random direction.
            angle = rng.uniform(0.0, 2.0 * np.pi)
            field = rng.normal() * (np.cos(angle) * cols + np.sin(angle) * rows)

            # A few Gaussian blobs of random centre, width and sign.
            for _ in range(_BLOBS_PER_PATTERN):
                row0, col0 = rng.uniform(-1.1, 1.1, size=2)
                width = rng.uniform(0.25, 0.6)
                amplitude = rng.normal(scale=1.5)
                distance2 = (rows - row0) ** 2 + (cols - col0) ** 2
                field = field + amplitude * np.exp(-distance2 / (2.0 * width**2))

            # Zero mean and unit standard deviation over land.
            values = field[land]
            spread = values.std()
            field = (field - values.mean()) / (spread if spread > 0 else 1.0)
            patterns[k, v] = np.where(land, field, np.nan)
    return patterns


def _regime_sequence(config: PlantedConfig, rng: np.random.Generator) -> np.ndarray:
    """Markov chain of regimes with a high stay probability, shape (time,)."""
    # Draw every stay-or-jump decision and jump size at once.
    stays = rng.random(config.n_time) < config.stay_probability
    jumps = rng.integers(1, max(config.n_regimes, 2), size=config.n_time)

    # Walk the chain: a jump moves to one of the other regimes uniformly.
    regime = np.empty(config.n_time, dtype=np.int64)
    regime[0] = rng.integers(config.n_regimes)
    for t in range(1, config.n_time):
        if stays[t] or config.n_regimes == 1:
            regime[t] = regime[t - 1]
        else:
            regime[t] = (regime[t - 1] + jumps[t]) % config.n_regimes
    return regime


def _smooth_noise(config: PlantedConfig, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance noise, smoothed in space, shape (time, var, lat, lon)."""
    # White noise, smoothed over lat and lon only.
    shape = (config.n_time, config.n_variables, config.n_lat, config.n_lon)
    noise = rng.standard_normal(shape)
    if config.noise_length > 0:
        sigma = (0.0, 0.0, config.noise_length, config.noise_length)
        noise = ndimage.gaussian_filter(noise, sigma=sigma, mode="wrap")

    # Back to a standard deviation of 1, which smoothing had reduced.
    return noise / noise.std()


def _as_cube(
    config: PlantedConfig, anomaly: np.ndarray, regime: np.ndarray
) -> xr.Dataset:
    """Physical fields in the climate-cube convention."""
    # Coordinates: cell centres in degrees, daily (or freq) time steps.
    lat = config.south + config.spacing * np.arange(config.n_lat)
    lon = config.west + config.spacing * np.arange(config.n_lon)
    time = pd.date_range(config.start, periods=config.n_time, freq=config.freq)
    coords = {
        "time": (
            "time",
            time.values.astype("datetime64[ns]"),
            {"standard_name": "time"},
        ),
        "lat": ("lat", lat, {"standard_name": "latitude", "units": "degrees_north"}),
        "lon": ("lon", lon, {"standard_name": "longitude", "units": "degrees_east"}),
        "regime": ("time", regime, {"long_name": "planted regime", "units": "1"}),
    }

    # One variable per field: offset plus scale times the anomaly.
    fields = {}
    for v, (name, units, standard, long_name, offset, scale) in enumerate(
        PLANTED_VARIABLES[: config.n_variables]
    ):
        attrs = {"units": units, "standard_name": standard, "long_name": long_name}
        fields[name] = (("time", "lat", "lon"), offset + scale * anomaly[:, v], attrs)

    return xr.Dataset(
        fields,
        coords=coords,
        attrs={
            "origin": f"engine.clustering.synthetic seed={config.seed}",
            "title": "synthetic cube with planted regimes",
        },
    )
