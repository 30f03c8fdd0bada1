"""Science engine of the Greenland bed and climate-clustering dashboard.

Pure Python, no user interface: the pages, the CLI (``python -m engine``)
and the tests all call the same functions. Sub-packages by subject:

- ``engine.data``: readers, regions, the data registry and synthetic twins;
- ``engine.bedtopo``: DeepTopoNet bed topography;
- ``engine.clustering``: DSC and HEDGTC deep spatiotemporal clustering;
- ``engine.backprop``: backpropagation as a product of Jacobians;
- ``engine.jobs``: long work run outside the page, with progress.
"""

__version__ = "0.1.0"
