"""Seeded synthetic twins of a Greenland outlet-glacier catchment.

A twin is a small made-up region whose true bed is known everywhere. It has
the same shape as the real data (see ``CONVENTIONS.md``): a grid with the
BedMachine-like variables plus ``bed_true``, and a table of radar picks
flown over the true bed with noise. Every bed method can therefore be run on
a twin exactly as on real data and then scored against the truth.

The twin is built in physical steps, each drawn from its own stream of
``numpy.random.default_rng(seed)``, so that the same seed always gives the
same arrays and picks, and changing one setting (the radar noise, say) does
not redraw the others (the bed):

1. the true bed: a regional slope, glacial troughs and ridges running
   along the flow, and band-limited roughness;
2. the surface: a perfectly plastic ice-sheet profile rising inland, with a
   damped and smoothed imprint of the bed relief;
3. the velocity: shallow-ice deformation plus sliding on a wet, deep bed,
   down the surface slope;
4. the surface mass balance and the rate of surface elevation change;
5. the radar picks: flight lines sampled along track from the true
   thickness, with Gaussian noise;
6. the BedMachine-like prior: the true bed smoothed and biased, with an
   error map that grows away from the radar lines.

Typical use::

    from engine.data.twin import make_twin

    twin = make_twin(seed=3)
    twin.grid["bed_true"]        # (y, x) metres, EPSG:3413
    twin.radar[["x", "y", "ice_thickness"]]
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
import rioxarray  # noqa: F401  (registers the ``.rio`` accessor)
import xarray as xr
from scipy import ndimage
from scipy.spatial import cKDTree

from engine.data.errors import DataError

__all__ = ["BedFeature", "Twin", "TwinConfig", "TwinConfigError", "make_twin"]

logger = logging.getLogger(__name__)

#: CRS of every twin: NSIDC Polar Stereographic North, metres.
CRS = "EPSG:3413"

#: Density of glacier ice, kg m-3.
RHO_ICE = 917.0

#: Acceleration of gravity, m s-2.
GRAVITY = 9.81

#: Exponent of Glen's flow law.
GLEN_N = 3

#: Seconds in a Julian year, to turn s-1 rates into a-1.
SECONDS_PER_YEAR = 365.25 * 86400.0

#: Driving stress at which the sliding speed equals ``sliding_speed``, Pa.
SLIDING_REFERENCE_STRESS = 1.0e5

#: Bed depth scale of the wet-bed switch for sliding, m: the bed is wet
#: (sliding) well below sea level and frozen (no sliding) well above.
WET_BED_SCALE = 150.0

#: Fraction of the negative surface mass balance that shows as thinning.
ABLATION_THINNING = 0.5

#: Smoothing length of the dh/dt field, m (altimetry is smooth).
DHDT_SMOOTHING = 1000.0

#: Standard deviation of the smooth random part of the SMB, m a-1.
SMB_NOISE_STD = 0.05

#: Correlation length of the smooth random part of the SMB, m.
SMB_NOISE_LENGTH = 3000.0

#: Fewest cells along each side of a twin grid.
MIN_CELLS = 16

#: Share of lifted surface cells above which a warning is given.
LIFTED_WARNING_SHARE = 0.05

#: Long names and units of the grid variables, in the order written.
_VARIABLES: dict[str, tuple[str, str]] = {
    "surface_elevation": ("ice or land surface elevation above the geoid", "m"),
    "surface_velocity_x": ("surface velocity, easting component", "m a-1"),
    "surface_velocity_y": ("surface velocity, northing component", "m a-1"),
    "surface_mass_balance": ("surface mass balance (ice equivalent)", "m a-1"),
    "surface_elevation_change": (
        "rate of surface elevation change (dh/dt)",
        "m a-1",
    ),
    "mask": (
        "BedMachine mask: 0 ocean, 1 ice-free land, 2 grounded ice, "
        "3 floating ice, 4 other ice masses",
        "1",
    ),
    "bed_bedmachine": ("BedMachine-like bed elevation (smoothed, biased)", "m"),
    "bed_bedmachine_error": ("BedMachine-like bed error (errbed)", "m"),
    "ice_thickness": (
        "BedMachine-like ice thickness (surface minus bed_bedmachine)",
        "m",
    ),
    "bed_true": ("synthetic twin: the true bed elevation", "m"),
}


class TwinConfigError(DataError):
    """A twin setting is out of range, of the wrong type or unknown."""


@dataclass(frozen=True, kw_only=True)
class TwinConfig:
    """Settings of a synthetic twin; every field has a working default.

    All lengths and elevations are in metres, rates in m a-1, and positions
    in EPSG:3413. The defaults give a 96 x 128 grid of 150 m cells (14.4 km
    north-south by 19.2 km east-west) about 15 km inland of the front of
    Upernavik Isstrom, north-west Greenland, where the ice flows west to the
    coast.

    Parameters
    ----------
    seed : int
        Seed of ``numpy.random.default_rng``; non-negative.
    ny, nx : int
        Number of rows (northing) and columns (easting), at least 16 each.
    spacing : float
        Cell size, m.
    origin_x, origin_y : float
        Easting and northing of the north-west corner of the grid (the
        outer edge of cell (0, 0), not its centre), m in EPSG:3413.
    margin_distance : float
        Distance from the ice margin (to the west) to the west edge of the
        grid, m. Sets where on the ice-sheet profile the grid lies.
    surface_margin_elevation : float
        Surface elevation at the ice margin, m.
    yield_stress : float
        Yield stress of the perfectly plastic surface profile, Pa.
    surface_bed_coupling : float
        Share, 0 to 1, of the smoothed bed relief that shows in the surface.
    surface_smoothing_length : float
        Gaussian standard deviation of the bed imprint on the surface, m.
    min_thickness : float
        Least true ice thickness on ice cells, m.
    ice_free_land : bool
        If true, cells where the ice would be thinner than ``min_thickness``
        become ice-free land (mask 1, thickness 0); if false (default) the
        surface is lifted there so that all cells are grounded ice.
    bed_margin_elevation : float
        Regional bed elevation at the ice margin, m.
    bed_slope : float
        Regional bed slope, rising inland (east), m per m.
    n_troughs, n_ridges : int
        Number of glacial troughs and of bedrock ridges.
    trough_depth : float
        Largest trough depth below the regional bed, at the margin side, m.
    trough_width : float
        Half-width of the U-shaped trough cross-profile, m.
    ridge_height : float
        Largest ridge height above the regional bed, m.
    ridge_width : float
        Standard deviation of the Gaussian ridge cross-profile, m.
    roughness_std : float
        Standard deviation of the band-limited bed roughness, m.
    roughness_length : float
        Shortest correlation length of the roughness, m; the band runs from
        this length to four times it.
    rate_factor : float
        Glen's flow-law rate factor A, Pa-3 s-1.
    sliding_speed : float
        Sliding speed on a wet bed under a 100 kPa driving stress, m a-1.
    stress_coupling_length : float
        Length over which the surface slope and the velocity are averaged,
        standing in for longitudinal stress coupling, m.
    ela : float
        Equilibrium-line altitude, where the SMB is zero, m.
    smb_gradient : float
        Rise of the SMB with elevation, (m a-1) per m.
    smb_max : float
        Largest SMB (accumulation), m a-1.
    dhdt_background : float
        Regional rate of surface elevation change, m a-1.
    dynamic_thinning : float
        Thinning per unit surface speed, (m a-1) per (m a-1).
    bedmachine_smoothing : float
        Gaussian standard deviation of the smoothing that makes the prior
        coarser than the truth, m (effective resolution about 2.4 times).
    bedmachine_bias : float
        Mean bias of the prior over the grid (prior minus truth), m.
    bedmachine_bias_std : float
        Standard deviation of the smooth random part of the bias, m.
    bedmachine_bias_length : float
        Correlation length of the random part of the bias, m.
    error_near, error_far : float
        Prior error on the radar lines and far from them, m.
    error_length : float
        E-folding distance of the error growth away from the lines, m.
    n_lines : int
        Number of radar flight lines; even ones run along the flow, odd
        ones across it.
    along_track_step : float
        Distance between radar picks along a line, m.
    radar_noise_std : float
        Standard deviation of the Gaussian radar thickness noise, m.
    line_wiggle : float
        Amplitude of the gentle lateral meander of the flight lines, m.
    """

    seed: int = 0
    ny: int = 96
    nx: int = 128
    spacing: float = 150.0
    origin_x: float = -290_000.0
    origin_y: float = -1_830_000.0
    margin_distance: float = 15_000.0
    surface_margin_elevation: float = 50.0
    yield_stress: float = 150_000.0
    surface_bed_coupling: float = 0.2
    surface_smoothing_length: float = 2000.0
    min_thickness: float = 10.0
    ice_free_land: bool = False
    bed_margin_elevation: float = 0.0
    bed_slope: float = 0.012
    n_troughs: int = 3
    trough_depth: float = 700.0
    trough_width: float = 1000.0
    n_ridges: int = 2
    ridge_height: float = 300.0
    ridge_width: float = 900.0
    roughness_std: float = 30.0
    roughness_length: float = 450.0
    rate_factor: float = 1.0e-24
    sliding_speed: float = 300.0
    stress_coupling_length: float = 1500.0
    ela: float = 1000.0
    smb_gradient: float = 0.003
    smb_max: float = 0.5
    dhdt_background: float = -0.1
    dynamic_thinning: float = 1.0e-3
    bedmachine_smoothing: float = 600.0
    bedmachine_bias: float = 20.0
    bedmachine_bias_std: float = 15.0
    bedmachine_bias_length: float = 3000.0
    error_near: float = 10.0
    error_far: float = 150.0
    error_length: float = 2000.0
    n_lines: int = 6
    along_track_step: float = 125.0
    radar_noise_std: float = 10.0
    line_wiggle: float = 250.0

    def __post_init__(self) -> None:
        _check_types(self)
        _check_ranges(self)


@dataclass(frozen=True)
class BedFeature:
    """One trough or ridge of the true bed, running broadly west-east.

    Its centre line meanders about the northing ``y_centre``::

        y_c(x) = y_centre + amplitude * sin(2 pi (x - x_west) / wavelength
                                            + phase)

    and its relief fades linearly from ``relief`` at the west edge
    (``x_west``) to ``relief * (1 - taper)`` at the east edge (``x_east``).
    A trough has a U-shaped cross-profile ``-r exp(-(d / width) ** 4)``, a
    ridge a Gaussian one ``r exp(-(d / width) ** 2 / 2)``, with ``d`` the
    distance across the centre line. All lengths in metres, EPSG:3413.
    """

    kind: Literal["trough", "ridge"]
    y_centre: float
    amplitude: float
    wavelength: float
    phase: float
    relief: float
    width: float
    taper: float
    x_west: float
    x_east: float

    def centre_y(self, x: np.ndarray) -> np.ndarray:
        """Northing of the centre line at eastings ``x`` (m), any shape."""
        angle = 2.0 * np.pi * (np.asarray(x) - self.x_west) / self.wavelength
        return self.y_centre + self.amplitude * np.sin(angle + self.phase)

    def distance(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Signed distance (m) of points from the centre line, north positive.

        The distance is measured across the line, from the northing offset
        and the local direction of the line; exact for a straight line and
        close for the gentle meanders drawn here.
        """
        x = np.asarray(x, dtype=float)
        angle = 2.0 * np.pi * (x - self.x_west) / self.wavelength + self.phase
        slope = self.amplitude * 2.0 * np.pi / self.wavelength * np.cos(angle)
        return (np.asarray(y) - self.centre_y(x)) / np.sqrt(1.0 + slope**2)

    def elevation(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Contribution (m) of the feature to the bed at points (x, y)."""
        d = self.distance(x, y) / self.width
        span = self.x_east - self.x_west
        along = np.clip((np.asarray(x) - self.x_west) / span, 0.0, 1.0)
        relief = self.relief * (1.0 - self.taper * along)
        if self.kind == "trough":
            return -relief * np.exp(-(d**4))
        return relief * np.exp(-0.5 * d**2)


@dataclass(frozen=True)
class Twin:
    """A synthetic twin: grid, radar picks, settings and bed features.

    Attributes
    ----------
    grid : xarray.Dataset
        Dims ``("y", "x")`` of shape ``(ny, nx)``, cell centres in metres,
        ``x`` increasing and ``y`` decreasing, CRS EPSG:3413 written with
        rioxarray; float32 variables ``surface_elevation`` (m),
        ``surface_velocity_x`` and ``surface_velocity_y`` (m a-1),
        ``surface_mass_balance`` (m a-1), ``surface_elevation_change``
        (m a-1), ``bed_bedmachine`` (m), ``bed_bedmachine_error`` (m),
        ``ice_thickness`` (m, of the prior: surface minus
        ``bed_bedmachine``) and ``bed_true`` (m); int8 ``mask`` (2 grounded
        ice, 1 ice-free land). Attributes ``grid_spacing`` (m), ``origin``
        (``"twin(seed=...)"``) and ``twin_config`` (the settings as JSON).
    radar : pandas.DataFrame
        One row per pick, columns ``x``, ``y`` (m, EPSG:3413),
        ``ice_thickness`` (m, noisy), ``bed_elevation`` (NaN: radar
        measures thickness), ``source`` and ``line_id`` (the line number);
        ``attrs`` ``crs`` and ``origin``.
    config : TwinConfig
        The settings the twin was made from.
    features : tuple of BedFeature
        The troughs and ridges of the true bed, south to north.
    """

    grid: xr.Dataset
    radar: pd.DataFrame
    config: TwinConfig
    features: tuple[BedFeature, ...]

    @property
    def true_thickness(self) -> xr.DataArray:
        """True ice thickness, surface minus ``bed_true`` (m), 0 on land."""
        thickness = self.grid["surface_elevation"] - self.grid["bed_true"]
        thickness = thickness.where(self.grid["mask"] == 2, 0.0)
        return thickness.rename("true_ice_thickness").assign_attrs(
            units="m", long_name="synthetic twin: the true ice thickness"
        )


def make_twin(config: TwinConfig | None = None, **overrides: Any) -> Twin:
    """Make a seeded synthetic twin of a Greenland outlet-glacier catchment.

    Parameters
    ----------
    config : TwinConfig, optional
        Settings; the defaults of :class:`TwinConfig` when omitted.
    **overrides
        Fields of :class:`TwinConfig` to change, e.g. ``seed=4, ny=48``.

    Returns
    -------
    Twin
        ``grid`` (xarray.Dataset, dims ``("y", "x")``, shape ``(ny, nx)``,
        EPSG:3413), ``radar`` (pandas.DataFrame of picks), ``config`` and
        ``features``. See :class:`Twin` for the variables and units.

    Raises
    ------
    TwinConfigError
        If ``config`` is not a TwinConfig, an override names no field, or a
        setting is out of range.

    Notes
    -----
    The model, step by step (x is easting, the ice margin lies
    ``margin_distance`` west of the grid, and ``d`` is the distance inland
    from it, m):

    - True bed ``b``: ``bed_margin_elevation + bed_slope * d`` plus a small
      random north-south tilt (at most 3 m per km), plus the troughs and
      ridges (:class:`BedFeature`), plus roughness: white noise filtered to
      a band from ``roughness_length`` to four times it (difference of two
      Gaussian filters) and scaled to ``roughness_std``. Troughs and ridges
      alternate from south to north, one per equal band of the grid, each
      a little off the band centre; troughs are deepest at the margin side
      (overdeepened), as at tidewater outlets.
    - Surface ``s``: the perfectly plastic profile
      ``surface_margin_elevation + sqrt(2 yield_stress d / (rho g))``
      plus ``surface_bed_coupling`` times the bed relief (bed minus the
      regional slope) Gaussian-smoothed over ``surface_smoothing_length``:
      ice surfaces show the bed only damped and at long wavelengths. Where
      ``s - b < min_thickness`` the surface is lifted to ``b +
      min_thickness`` (with a warning if that is over 5 % of the cells),
      or, with ``ice_free_land``, the cell becomes land with ``s = b``.
    - Velocity: the surface is Gaussian-smoothed over
      ``stress_coupling_length`` and gives the driving stress ``tau = rho g
      H |grad s|`` (``H = s - b``). The speed is the shallow-ice
      deformation ``2 A / (n + 1) tau^n H`` (n = 3, A = ``rate_factor``)
      plus linear sliding ``sliding_speed * tau / 100 kPa`` on the wet part
      of the bed (a tanh switch from dry above sea level to wet below,
      scale 150 m). It points down the smoothed surface slope and is then
      smoothed over half ``stress_coupling_length``. Thick ice on a deep
      bed, that is the troughs, flows fastest. Zero on land.
    - Surface mass balance: ``smb_gradient * (s - ela)``, capped at
      ``smb_max``, plus a smooth random part (standard deviation 0.05 m a-1
      over 3 km). Negative below the ELA, i.e. near the margin.
    - dh/dt: ``dhdt_background + 0.5 * min(smb, 0) - dynamic_thinning *
      speed``, smoothed over 1 km: thinning is strongest where the ice is
      fast and low.
    - Radar: ``n_lines`` lines, along flow (within 20 degrees of east) and
      across flow in turn, each through a random point of the central 60 %
      of the grid, meandering by ``line_wiggle``, sampled every
      ``along_track_step`` m inside the extent of the cell centres. The
      thickness at a pick is ``s - b`` interpolated bilinearly from the
      float32 grid plus Gaussian noise of ``radar_noise_std``, floored at
      zero; picks on ice-free land are left out.
    - BedMachine-like prior: the true bed Gaussian-smoothed over
      ``bedmachine_smoothing``, plus a bias field of mean exactly
      ``bedmachine_bias`` over the grid and a smooth random part of
      ``bedmachine_bias_std`` over ``bedmachine_bias_length``, capped at the
      surface so that its thickness is never negative; on land it is the
      surface, as in BedMachine. Unlike BedMachine it does not honour the
      radar picks, so that a method must bring them in itself. Its error
      map is ``error_near + (error_far - error_near) * (1 - exp(-D /
      error_length))`` with ``D`` the distance to the nearest pick (like
      BedMachine's errbed), ``error_near`` on land.

    Every random draw comes from ``numpy.random.default_rng(seed)``, split
    into independent streams for the features, the roughness, the bias,
    the SMB, the flight lines and the radar noise.
    """
    # Settings: the given ones, with the overrides applied and checked
    config = _resolve_config(config, overrides)

    # Random streams, one per step, all from the one seed
    rng = np.random.default_rng(config.seed)
    feature_rng, rough_rng, bias_rng, smb_rng, line_rng, noise_rng = rng.spawn(6)

    # Cell centres: x increasing, y decreasing (row 0 is the north edge)
    x = config.origin_x + (np.arange(config.nx) + 0.5) * config.spacing
    y = config.origin_y - (np.arange(config.ny) + 0.5) * config.spacing
    xx, yy = np.meshgrid(x, y)

    # True bed: regional slope, troughs and ridges, roughness
    regional = _regional_bed(config, xx, yy, feature_rng)
    features = _draw_features(config, x, y, feature_rng)
    relief = _roughness(config, rough_rng)
    for feature in features:
        relief += feature.elevation(xx, yy)
    bed = regional + relief

    # Surface and mask, with the least thickness enforced
    surface, mask = _surface(config, xx, bed, relief)
    bed = bed.astype(np.float32)
    surface = surface.astype(np.float32)
    ice = mask == 2
    thickness = np.where(ice, surface.astype(float) - bed, 0.0)

    # Velocity, SMB and dh/dt consistent with the geometry
    vx, vy = _velocity(config, x, y, surface, thickness, bed, ice)
    smb = _surface_mass_balance(config, surface, smb_rng)
    dhdt = _elevation_change(config, smb, np.hypot(vx, vy))

    # Radar picks flown over the true thickness
    radar = _fly_radar(config, x, y, surface, bed, mask, line_rng, noise_rng)

    # BedMachine-like prior and its error map
    prior, error = _bedmachine_prior(config, x, y, bed, surface, ice, radar, bias_rng)

    # The grid, in the schema of the real data
    fields = {
        "surface_elevation": surface,
        "surface_velocity_x": vx,
        "surface_velocity_y": vy,
        "surface_mass_balance": smb,
        "surface_elevation_change": dhdt,
        "mask": mask,
        "bed_bedmachine": prior,
        "bed_bedmachine_error": error,
        "ice_thickness": np.where(ice, surface - prior, 0.0),
        "bed_true": bed,
    }
    grid = _assemble_grid(config, x, y, fields)
    logger.debug(
        "twin seed=%d: %d x %d cells, %d picks on %d lines",
        config.seed,
        config.ny,
        config.nx,
        len(radar),
        radar["line_id"].nunique(),
    )
    return Twin(grid=grid, radar=radar, config=config, features=features)


def _resolve_config(config: TwinConfig | None, overrides: dict[str, Any]) -> TwinConfig:
    """The settings to use: ``config`` (or the defaults) with overrides."""
    # The base settings
    if config is None:
        config = TwinConfig()
    elif not isinstance(config, TwinConfig):
        raise TwinConfigError(
            f"config must be a TwinConfig, not {type(config).__name__}; "
            "pass TwinConfig(...) or give the settings as keywords"
        )

    # Overrides, each naming a field
    names = [f.name for f in dataclasses.fields(TwinConfig)]
    for key in overrides:
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise TwinConfigError(
                f"unknown twin setting {key!r}; {hint}the settings are: "
                + ", ".join(names)
            )

    return dataclasses.replace(config, **overrides) if overrides else config


def _check_types(config: TwinConfig) -> None:
    """Raise TwinConfigError if a field has the wrong type or is not finite."""
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        kind = type(item.default)

        # Booleans are only booleans
        if kind is bool:
            if not isinstance(value, (bool, np.bool_)):
                raise TwinConfigError(
                    f"twin setting {item.name} must be True or False, not {value!r}"
                )
            continue

        # Counts are whole numbers, and True/False are not counts
        if kind is int:
            if isinstance(value, (bool, np.bool_)) or not isinstance(
                value, (int, np.integer)
            ):
                raise TwinConfigError(
                    f"twin setting {item.name} must be a whole number, not "
                    f"{value!r}; give it as an int"
                )
            continue

        # Quantities are finite real numbers
        if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating)
        ):
            raise TwinConfigError(
                f"twin setting {item.name} must be a number, not {value!r}"
            )
        if not math.isfinite(value):
            raise TwinConfigError(
                f"twin setting {item.name} must be finite, not {value!r}"
            )


def _check_ranges(c: TwinConfig) -> None:
    """Raise TwinConfigError naming the first setting out of range."""
    # Seed and grid size
    if c.seed < 0:
        raise TwinConfigError(f"seed must be 0 or more, not {c.seed}")
    if c.ny < MIN_CELLS or c.nx < MIN_CELLS:
        raise TwinConfigError(
            f"a twin grid of {c.ny} x {c.nx} cells is too small; give ny and nx "
            f"of at least {MIN_CELLS} each"
        )
    if c.spacing <= 0:
        raise TwinConfigError(
            f"spacing must be a positive cell size in metres, not {c.spacing}; "
            "use e.g. spacing=150.0"
        )

    # Lengths and amounts that cannot be negative
    non_negative = (
        "margin_distance",
        "surface_smoothing_length",
        "min_thickness",
        "trough_depth",
        "ridge_height",
        "roughness_std",
        "roughness_length",
        "rate_factor",
        "sliding_speed",
        "stress_coupling_length",
        "smb_gradient",
        "dynamic_thinning",
        "bedmachine_smoothing",
        "bedmachine_bias_std",
        "bedmachine_bias_length",
        "error_near",
        "radar_noise_std",
        "line_wiggle",
        "n_troughs",
        "n_ridges",
    )
    for name in non_negative:
        if getattr(c, name) < 0:
            raise TwinConfigError(
                f"{name} must be 0 or more, not {getattr(c, name)}; "
                "use 0 to switch it off"
            )
    positive = ("yield_stress", "trough_width", "ridge_width", "error_length")
    for name in positive:
        if getattr(c, name) <= 0:
            raise TwinConfigError(
                f"{name} must be positive, not {getattr(c, name)}"
            )
    if not 0.0 <= c.surface_bed_coupling <= 1.0:
        raise TwinConfigError(
            f"surface_bed_coupling must lie between 0 and 1, not "
            f"{c.surface_bed_coupling}; 0.1 to 0.3 is typical"
        )
    if c.error_far < c.error_near:
        raise TwinConfigError(
            f"error_far ({c.error_far} m) is below error_near ({c.error_near} m); "
            "the prior error must grow away from the radar lines"
        )

    # Troughs and ridges: resolved by the grid, and room for all of them
    widths = []
    if c.n_troughs:
        widths.append(("trough_width", c.trough_width))
    if c.n_ridges:
        widths.append(("ridge_width", c.ridge_width))
    for name, width in widths:
        if width < 2 * c.spacing:
            raise TwinConfigError(
                f"{name}={width} m is under two cells of {c.spacing} m, so the "
                f"grid cannot resolve it; make {name} at least {2 * c.spacing} m "
                "or the spacing smaller"
            )
    count = c.n_troughs + c.n_ridges
    if count:
        band = c.ny * c.spacing / count
        widest = max(width for _, width in widths)
        if band < 2 * widest:
            raise TwinConfigError(
                f"the grid is too small for {c.n_troughs} troughs and {c.n_ridges} "
                f"ridges: each needs a band of {2 * widest:g} m north-south but "
                f"ny * spacing = {c.ny * c.spacing:g} m gives {band:g} m; raise ny "
                "or spacing, or lower n_troughs, n_ridges or their widths"
            )

    # Flight lines
    if c.n_lines < 1:
        raise TwinConfigError(
            f"n_lines must be 1 or more, not {c.n_lines}; a twin needs radar"
        )
    shortest = min(c.ny, c.nx) * c.spacing
    if not 0 < c.along_track_step <= shortest / 4:
        raise TwinConfigError(
            f"along_track_step must be positive and at most a quarter of the "
            f"grid's shorter side ({shortest / 4:g} m), not {c.along_track_step}"
        )
    if c.line_wiggle > 0.2 * shortest:
        raise TwinConfigError(
            f"line_wiggle={c.line_wiggle} m would take lines off the grid; keep "
            f"it at most a fifth of the grid's shorter side ({0.2 * shortest:g} m)"
        )


def _draw_features(
    config: TwinConfig, x: np.ndarray, y: np.ndarray, rng: np.random.Generator
) -> tuple[BedFeature, ...]:
    """Troughs and ridges, alternating south to north, one per band."""
    # Kinds in turn, troughs first, the extra ones of either kind at the end
    kinds: list[Literal["trough", "ridge"]] = []
    troughs, ridges = config.n_troughs, config.n_ridges
    while troughs or ridges:
        if troughs:
            kinds.append("trough")
            troughs -= 1
        if ridges:
            kinds.append("ridge")
            ridges -= 1

    # One feature per equal band of northing, a little off its centre
    south = config.origin_y - config.ny * config.spacing
    band = config.ny * config.spacing / max(len(kinds), 1)
    x_west, x_east = float(x[0]), float(x[-1])
    extent = config.nx * config.spacing
    features = []
    for index, kind in enumerate(kinds):
        is_trough = kind == "trough"
        width = config.trough_width if is_trough else config.ridge_width
        room = max(band / 2 - width, 0.0)
        centre = south + (index + 0.5) * band + rng.uniform(-0.3, 0.3) * room
        features.append(
            BedFeature(
                kind=kind,
                y_centre=float(centre),
                amplitude=float(rng.uniform(0.2, 0.6) * room),
                wavelength=float(rng.uniform(1.0, 2.0) * extent),
                phase=float(rng.uniform(0.0, 2.0 * np.pi)),
                relief=float(
                    rng.uniform(0.7, 1.0)
                    * (config.trough_depth if is_trough else config.ridge_height)
                ),
                width=float(width),
                taper=float(
                    rng.uniform(0.3, 0.5) if is_trough else rng.uniform(0.0, 0.3)
                ),
                x_west=x_west,
                x_east=x_east,
            )
        )

    return tuple(features)


def _regional_bed(
    config: TwinConfig, xx: np.ndarray, yy: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Regional bed (m): rising inland, with a small random north tilt."""
    inland = config.margin_distance + (xx - config.origin_x)
    mid_y = config.origin_y - 0.5 * config.ny * config.spacing
    tilt = rng.uniform(-0.003, 0.003)
    return config.bed_margin_elevation + config.bed_slope * inland + tilt * (yy - mid_y)


def _roughness(config: TwinConfig, rng: np.random.Generator) -> np.ndarray:
    """Band-limited bed roughness (m), zero mean, ``roughness_std`` std."""
    # White noise, band-passed by a difference of Gaussian filters
    noise = rng.standard_normal((config.ny, config.nx))
    if config.roughness_std == 0:
        return np.zeros_like(noise)
    sigma = config.roughness_length / config.spacing
    band = ndimage.gaussian_filter(noise, sigma) - ndimage.gaussian_filter(
        noise, 4 * sigma
    )

    # Scaled to the wanted standard deviation
    return _standardise(band) * config.roughness_std


def _standardise(field: np.ndarray) -> np.ndarray:
    """The field less its mean, over its standard deviation (0 if flat)."""
    field = field - field.mean()
    std = field.std()
    return field / std if std > 0 else field


def _surface(
    config: TwinConfig, xx: np.ndarray, bed: np.ndarray, relief: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Surface elevation (m) and mask (int8) over the true bed."""
    # Plastic profile rising inland, with a damped smooth imprint of the bed
    inland = config.margin_distance + (xx - config.origin_x)
    profile = config.surface_margin_elevation + np.sqrt(
        2.0 * config.yield_stress * inland / (RHO_ICE * GRAVITY)
    )
    imprint = ndimage.gaussian_filter(
        relief, config.surface_smoothing_length / config.spacing
    )
    surface = profile + config.surface_bed_coupling * imprint

    # Cells where the ice would be too thin: lifted, or ice-free land
    thin = surface - bed < config.min_thickness
    mask = np.full(surface.shape, 2, dtype=np.int8)
    if config.ice_free_land:
        mask[thin] = 1
        surface = np.where(thin, bed, surface)
    else:
        surface = np.where(thin, bed + config.min_thickness, surface)
        share = thin.mean()
        if share > LIFTED_WARNING_SHARE:
            warnings.warn(
                f"the twin surface was lifted to min_thickness above the bed on "
                f"{share:.0%} of the cells; raise yield_stress or margin_distance, "
                "lower ridge_height, or set ice_free_land=True",
                stacklevel=3,
            )

    return surface, mask


def _velocity(
    config: TwinConfig,
    x: np.ndarray,
    y: np.ndarray,
    surface: np.ndarray,
    thickness: np.ndarray,
    bed: np.ndarray,
    ice: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Surface velocity components (m a-1): deformation plus sliding."""
    # Surface slope averaged over the coupling length
    sigma = config.stress_coupling_length / config.spacing
    smooth = ndimage.gaussian_filter(surface.astype(float), sigma)
    dsdy, dsdx = np.gradient(smooth, y, x)
    slope = np.hypot(dsdx, dsdy)

    # Driving stress, shallow-ice deformation and wet-bed sliding
    tau = RHO_ICE * GRAVITY * thickness * slope
    deformation = (
        2.0 * config.rate_factor / (GLEN_N + 1) * SECONDS_PER_YEAR
        * tau**GLEN_N * thickness
    )
    wet = 0.5 * (1.0 + np.tanh(-bed / WET_BED_SCALE))
    sliding = config.sliding_speed * tau / SLIDING_REFERENCE_STRESS * wet
    speed = deformation + sliding

    # Down the slope, averaged over half the coupling length, zero on land
    with np.errstate(invalid="ignore", divide="ignore"):
        ux = np.where(slope > 0, -speed * dsdx / slope, 0.0)
        uy = np.where(slope > 0, -speed * dsdy / slope, 0.0)
    ux = np.where(ice, ndimage.gaussian_filter(ux, sigma / 2), 0.0)
    uy = np.where(ice, ndimage.gaussian_filter(uy, sigma / 2), 0.0)

    return ux, uy


def _surface_mass_balance(
    config: TwinConfig, surface: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """SMB (m a-1 ice equivalent): elevation gradient, capped, plus noise."""
    # Linear in elevation about the ELA, capped at the accumulation maximum
    smb = np.minimum(config.smb_gradient * (surface - config.ela), config.smb_max)

    # A smooth random part
    noise = ndimage.gaussian_filter(
        rng.standard_normal(surface.shape), SMB_NOISE_LENGTH / config.spacing
    )

    return smb + _standardise(noise) * SMB_NOISE_STD


def _elevation_change(
    config: TwinConfig, smb: np.ndarray, speed: np.ndarray
) -> np.ndarray:
    """dh/dt (m a-1): background, ablation thinning and dynamic thinning."""
    dhdt = (
        config.dhdt_background
        + ABLATION_THINNING * np.minimum(smb, 0.0)
        - config.dynamic_thinning * speed
    )
    return ndimage.gaussian_filter(dhdt, DHDT_SMOOTHING / config.spacing)


def _flight_paths(
    config: TwinConfig, x: np.ndarray, y: np.ndarray, rng: np.random.Generator
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pick positions (m) of each flight line, within the cell centres."""
    x_lo, x_hi, y_lo, y_hi = x[0], x[-1], y[-1], y[0]
    width, height = x_hi - x_lo, y_hi - y_lo
    reach = math.hypot(width, height)
    fine = min(config.along_track_step, config.spacing) / 8
    t = np.arange(-reach, reach + fine, fine)
    paths = []
    for line in range(config.n_lines):
        # Heading: along flow (east) for even lines, across for odd ones
        heading = (0.5 * np.pi if line % 2 else 0.0) + np.radians(rng.uniform(-20, 20))
        centre_x = x_lo + width * rng.uniform(0.2, 0.8)
        centre_y = y_lo + height * rng.uniform(0.2, 0.8)
        wavelength = reach * rng.uniform(0.7, 1.5)
        phase = rng.uniform(0.0, 2.0 * np.pi)
        start = rng.uniform(0.0, config.along_track_step)

        # A finely traced meandering path through the centre point
        lateral = config.line_wiggle * np.sin(2.0 * np.pi * t / wavelength + phase)
        px = centre_x + t * np.cos(heading) - lateral * np.sin(heading)
        py = centre_y + t * np.sin(heading) + lateral * np.cos(heading)

        # Resampled at even steps of distance flown, kept on the grid
        flown = np.concatenate([[0.0], np.cumsum(np.hypot(np.diff(px), np.diff(py)))])
        marks = np.arange(start, flown[-1], config.along_track_step)
        qx, qy = np.interp(marks, flown, px), np.interp(marks, flown, py)
        inside = (qx >= x_lo) & (qx <= x_hi) & (qy >= y_lo) & (qy <= y_hi)
        paths.append((qx[inside], qy[inside]))

    return paths


def _fly_radar(
    config: TwinConfig,
    x: np.ndarray,
    y: np.ndarray,
    surface: np.ndarray,
    bed: np.ndarray,
    mask: np.ndarray,
    line_rng: np.random.Generator,
    noise_rng: np.random.Generator,
) -> pd.DataFrame:
    """Radar picks: true thickness at points along the lines, plus noise."""
    # Positions and line numbers of all picks
    paths = _flight_paths(config, x, y, line_rng)
    px = np.concatenate([p[0] for p in paths])
    py = np.concatenate([p[1] for p in paths])
    line = np.concatenate(
        [np.full(p[0].size, k, dtype=np.int64) for k, p in enumerate(paths)]
    )

    # Picks over ice only (nearest cell), then bilinear true thickness
    row = (y[0] - py) / config.spacing
    col = (px - x[0]) / config.spacing
    nearest = mask[np.rint(row).astype(int), np.rint(col).astype(int)]
    keep = nearest == 2
    px, py, line, row, col = px[keep], py[keep], line[keep], row[keep], col[keep]
    thickness = np.where(mask == 2, surface.astype(float) - bed, 0.0)
    truth = ndimage.map_coordinates(thickness, [row, col], order=1, mode="nearest")

    # Gaussian noise, floored at zero thickness
    noise = noise_rng.normal(0.0, config.radar_noise_std, truth.size)
    noisy = np.maximum(truth + noise, 0.0)

    radar = pd.DataFrame(
        {
            "x": px.astype(np.float64),
            "y": py.astype(np.float64),
            "ice_thickness": noisy.astype(np.float64),
            "bed_elevation": np.full(px.size, np.nan),
            "source": line,
            "line_id": line.copy(),
        }
    )
    radar.attrs["crs"] = CRS
    radar.attrs["origin"] = f"twin(seed={config.seed})"
    return radar


def _bedmachine_prior(
    config: TwinConfig,
    x: np.ndarray,
    y: np.ndarray,
    bed: np.ndarray,
    surface: np.ndarray,
    ice: np.ndarray,
    radar: pd.DataFrame,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """BedMachine-like bed (m) and its error map (m)."""
    # Smoothed truth plus a bias field of the configured mean
    smooth = ndimage.gaussian_filter(
        bed.astype(float), config.bedmachine_smoothing / config.spacing
    )
    wander = ndimage.gaussian_filter(
        rng.standard_normal(bed.shape), config.bedmachine_bias_length / config.spacing
    )
    bias = config.bedmachine_bias + _standardise(wander) * config.bedmachine_bias_std
    prior = smooth + bias

    # Never above the surface on ice; the surface itself on land
    prior = np.where(ice, np.minimum(prior, surface), surface)

    # Error growing with distance from the nearest radar pick
    xx, yy = np.meshgrid(x, y)
    if len(radar):
        tree = cKDTree(radar[["x", "y"]].to_numpy())
        distance, _ = tree.query(np.column_stack([xx.ravel(), yy.ravel()]))
        distance = distance.reshape(xx.shape)
    else:
        distance = np.full(xx.shape, np.inf)
    growth = 1.0 - np.exp(-distance / config.error_length)
    error = config.error_near + (config.error_far - config.error_near) * growth
    error = np.where(ice, error, config.error_near)

    return prior, error


def _assemble_grid(
    config: TwinConfig, x: np.ndarray, y: np.ndarray, fields: dict[str, np.ndarray]
) -> xr.Dataset:
    """The twin grid: float32 variables, int8 mask, coords, attrs and CRS."""
    # Variables with units and long names
    data_vars = {}
    for name, (long_name, units) in _VARIABLES.items():
        dtype = np.int8 if name == "mask" else np.float32
        attrs = {"units": units, "long_name": long_name}
        if name == "mask":
            attrs["flag_values"] = np.arange(5, dtype=np.int8)
            attrs["flag_meanings"] = (
                "ocean ice_free_land grounded_ice floating_ice other_ice"
            )
        data_vars[name] = (("y", "x"), np.asarray(fields[name]).astype(dtype), attrs)

    # Coordinates of the cell centres, metres in EPSG:3413
    coords = {
        "y": (
            "y",
            y.astype(np.float64),
            {
                "units": "m",
                "standard_name": "projection_y_coordinate",
                "long_name": "northing (cell centre)",
            },
        ),
        "x": (
            "x",
            x.astype(np.float64),
            {
                "units": "m",
                "standard_name": "projection_x_coordinate",
                "long_name": "easting (cell centre)",
            },
        ),
    }
    attrs = {
        "grid_spacing": float(config.spacing),
        "origin": f"twin(seed={config.seed})",
        "twin_config": json.dumps(
            dataclasses.asdict(config), default=lambda value: value.item()
        ),
    }

    grid = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    return grid.rio.write_crs(CRS)
