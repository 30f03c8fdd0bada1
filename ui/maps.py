"""Map helpers shared by the pages: a Greenland map that works offline.

Maps are leafmap's folium maps shown with ``streamlit_folium.st_folium``.
With the assets fetched by ``python -m ui.assets``, every script and style
sheet the map needs comes from the app's own static folder, so the map
works with no internet; a tiled basemap is optional.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterable

import folium
import folium.plugins
import leafmap.foliumap as leafmap

from engine.data.overview import Footprint
from engine.data.regions import GREENLAND_OUTLINE_LONLAT
from ui.assets import assets_present, local_url

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "greenland_map",
    "add_footprints",
    "finish_map",
    "use_local_assets",
    "KIND_STYLE",
    "VIEWS",
    "raster_overlay",
]

#: Colours of the footprint kinds on the maps.
KIND_STYLE: dict[str, dict[str, Any]] = {
    "grid": {"color": "#d62728", "weight": 2, "fillOpacity": 0.08},
    "bedmachine": {"color": "#9467bd", "weight": 2, "fillOpacity": 0.08},
    "radar": {"color": "#1f77b4", "weight": 1.5, "opacity": 0.9},
    "points": {"color": "#ff7f0e", "weight": 2, "fillOpacity": 0.08},
    "outline": {"color": "#555555", "weight": 1, "fillColor": "#e8eef3",
                "fillOpacity": 0.6, "dashArray": "4"},
}  # fmt: skip

#: Named map views: ``(latitude, longitude)`` of the centre and a zoom level.
VIEWS: dict[str, tuple[tuple[float, float], int]] = {
    "Greenland": ((76.5, -42.0), 3),
    "Helheim demo": ((66.45, -38.4), 9),
    "Narsap Sermia": ((64.7, -48.9), 8),
    "79N Glacier": ((79.4, -22.0), 8),
}

# Local replacements of the CDN files, by the file name at the end of the URL.
_LOCAL_FILES = {
    "leaflet.js": ("leaflet", "leaflet.js"),
    "leaflet.css": ("leaflet", "leaflet.css"),
    "leaflet.draw.js": ("leaflet-draw", "leaflet.draw.js"),
    "leaflet.draw.css": ("leaflet-draw", "leaflet.draw.css"),
    "Control.FullScreen.min.js": ("leaflet.fullscreen", "Control.FullScreen.js"),
    "Control.FullScreen.js": ("leaflet.fullscreen", "Control.FullScreen.js"),
    "Control.FullScreen.css": ("leaflet.fullscreen", "Control.FullScreen.css"),
}


def _localised(links: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Swap CDN links for local ones; drop those the maps do not use."""
    out = []
    for name, url in links:
        filename = url.rsplit("/", 1)[-1]
        if filename in _LOCAL_FILES:
            out.append((name, local_url(*_LOCAL_FILES[filename])))
    return out


def finish_map(m: folium.Map) -> folium.Map:
    """Add the layer switcher and point the map's assets at local copies."""
    folium.LayerControl(collapsed=False).add_to(m)
    return use_local_assets(m)


def use_local_assets(m: folium.Map) -> folium.Map:
    """Point every script and style sheet of a map at the local copies.

    Links with no local copy (jQuery, Bootstrap, Font Awesome: folium loads
    them for marker icons and popups these maps do not use) are dropped,
    because ``st_folium`` shows no map at all when one fails to load
    offline. Without the fetched assets the map is left as it is.
    """
    if not assets_present():
        return m

    # Walk the map's element tree; instance attributes shadow the class's.
    stack = [m]
    while stack:
        element = stack.pop()
        if hasattr(element, "default_js"):
            element.default_js = _localised(element.default_js)
            element.default_css = _localised(element.default_css)
        stack.extend(getattr(element, "_children", {}).values())
    return m


def greenland_map(
    *,
    basemap: bool = False,
    draw: bool = False,
    draw_lines: bool = False,
    height: int = 560,
    center: tuple[float, float] = (72.0, -42.0),
    zoom: int = 3,
) -> leafmap.Map:
    """A map of Greenland with a coarse coastline, ready for ``st_folium``.

    Parameters
    ----------
    basemap : bool
        Add OpenStreetMap tiles (needs the internet); the coarse outline of
        Greenland is drawn either way.
    draw : bool
        Add a draw tool for rectangles and polygons.
    draw_lines : bool
        Let the draw tool draw lines too (for profiles).
    height : int
        Height in pixels.
    center : tuple of float
        ``(latitude, longitude)`` of the initial view, degrees.
    zoom : int
        Initial zoom level.

    Returns
    -------
    leafmap.foliumap.Map
        The map; call :func:`finish_map` after adding layers.
    """
    m = leafmap.Map(
        center=center,
        zoom=zoom,
        height=height,
        tiles="OpenStreetMap" if basemap else None,
        draw_control=False,
        measure_control=False,
        fullscreen_control=False,
        layers_control=True,
        attribution_control=basemap,
    )

    # The coarse coastline, so the map is never blank offline.
    outline = {
        "type": "Polygon",
        "coordinates": [[list(p) for p in GREENLAND_OUTLINE_LONLAT]
                        + [list(GREENLAND_OUTLINE_LONLAT[0])]],
    }  # fmt: skip
    folium.GeoJson(
        outline,
        name="Greenland (coarse outline)",
        style_function=lambda _: KIND_STYLE["outline"],
        interactive=False,
    ).add_to(m)

    # One draw tool: rectangles and polygons, lines when asked.
    if draw:
        folium.plugins.Draw(
            export=False,
            draw_options={
                "polyline": draw_lines,
                "circle": False,
                "marker": False,
                "circlemarker": False,
                "rectangle": True,
                "polygon": True,
            },
            edit_options={"edit": False},
        ).add_to(m)
    return m


def add_footprints(m: folium.Map, footprints: Iterable[Footprint]) -> folium.Map:
    """Add data footprints (grid outlines, radar lines) as map layers."""
    for item in footprints:
        style = KIND_STYLE[item.kind]
        caption = ", ".join(f"{v:,} {k}" for k, v in item.details.items())
        folium.GeoJson(
            item.geojson,
            name=item.label,
            style_function=lambda _, style=style: style,
            tooltip=f"{item.label}: {caption}" if caption else item.label,
        ).add_to(m)
    return m


def raster_overlay(
    da: "xr.DataArray",
    *,
    name: str,
    cmap: str,
    vmin: float,
    vmax: float,
    opacity: float = 0.85,
    show: bool = True,
) -> folium.raster_layers.ImageOverlay:
    """A grid in EPSG:3413 as an image layer for a web map (works offline).

    The grid is reprojected to Web Mercator, so that its pixels lie straight
    on the map, colour-mapped, and embedded as a PNG data URL.

    Parameters
    ----------
    da : xarray.DataArray
        Dims ``("y", "x")``, EPSG:3413 (rioxarray CRS), NaN as nodata.
    name : str
        Layer name in the layer switcher.
    cmap : str
        A matplotlib colour map.
    vmin, vmax : float
        Value range of the colour map.
    """
    import matplotlib
    import numpy as np
    from pyproj import Transformer

    # Reproject to Web Mercator, NaN outside the data.
    da = da.rio.write_nodata(np.nan, encoded=False)
    merc = da.astype("float32").rio.reproject("EPSG:3857", nodata=np.nan)
    values = merc.to_numpy()

    # Colour-map to RGBA, transparent where there is no value.
    norm = (values - vmin) / max(vmax - vmin, 1e-9)
    rgba = matplotlib.colormaps[cmap](np.clip(norm, 0, 1), bytes=True)
    rgba[..., 3] = np.where(np.isfinite(values), 255, 0)

    # Corners of the image in longitude/latitude.
    left, bottom, right, top = merc.rio.bounds()
    to_lonlat = Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True)
    lon0, lat0 = to_lonlat.transform(left, bottom)
    lon1, lat1 = to_lonlat.transform(right, top)
    return folium.raster_layers.ImageOverlay(
        image=rgba,
        bounds=[[lat0, lon0], [lat1, lon1]],
        name=name,
        opacity=opacity,
        show=show,
        mercator_project=False,
    )
