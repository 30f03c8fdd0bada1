"""Data access: every reader ends in the model of ``CONVENTIONS.md``.

Modules
-------
grids
    The DeepTopoNet HDF5 grid schema and BedMachine Greenland NetCDF.
radar
    Radar picks (plain and CReSIS CSV, MATLAB, bed points), flight lines,
    radar averaged onto a grid.
regions
    Drawn polygons and boxes to windows on a grid, with checks.
climate
    Multivariate gridded climate NetCDF to one (time, lat, lon) cube.
twin
    Seeded synthetic twins with a known true bed.
registry, earthdata
    The demo data sets (data directory, cache, checksummed fetch) and the
    NASA Earthdata fetchers for BedMachine and radar.
overview, info
    Footprints of the data for maps; summaries of files for the CLI.
"""
