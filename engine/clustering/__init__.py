"""Deep spatiotemporal clustering of climate cubes: the foundations.

Both methods of this package (DSC and HEDGTC, see ``METHODS.md``) cluster
*time steps*: each sample is the set of maps of several variables at one
step. What exists so far, all on numpy and scikit-learn:

- ``synthetic``: seeded climate cubes with planted, persistent regimes
  and a land mask, to score methods against a known truth;
- ``prepare``: a climate cube to samples (variables, diurnal or seasonal
  anomalies, daily means, per-variable z-score over land, land-only
  features or the papers' mean fill, padded grids for networks);
- ``metrics``: the papers' internal scores (computed in the input space),
  stability across seeds, ARI and NMI against known labels;
- ``consensus``: co-association, HEDGTC's spectral and NMF consensus,
  CSPA, MCLA and HBGF written from their papers, Hungarian relabelling;
- ``baselines``: k-means, Ward agglomerative and Gaussian-mixture runners
  with a common ``run_<name>(X, k, *, seed)`` signature;
- ``errors``: ``ClusteringInputError``, ``ClusteringConfigError`` and
  ``ClusteringWarning``.

Not written yet: the DSC network (convolutional-LSTM autoencoder with a
Student's t clustering layer), DEC and DTC, HEDGTC's graph attention
autoencoder, the homogeneous/heterogeneous ensemble driver, Dask-parallel
ensemble runs, and the spatial mode (clustering cells instead of time
steps).
"""
