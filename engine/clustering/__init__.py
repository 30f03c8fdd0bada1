"""Deep spatiotemporal clustering of climate cubes.

Both methods of this package (DSC and HEDGTC, see ``METHODS.md``) cluster
*time steps*: each sample is the set of maps of several variables at one
step. The entry point for pages, jobs and the CLI is
:func:`engine.clustering.runner.run_clustering`. Modules:

- ``runner``: ``ClusteringConfig`` to ``ClusteringResult`` (labels,
  input-space metrics, composites, HEDGTC stages), run folders written
  atomically and read back, ``sweep_k`` and ``compare_methods``;
- ``prepare``: a climate cube to samples (variables, diurnal or seasonal
  anomalies, daily means, per-variable z-score over land, land-only
  features or the papers' mean fill, padded grids for networks);
- ``synthetic``: seeded cubes with planted, persistent regimes;
- ``metrics``: the papers' internal scores (in the input space),
  stability across seeds, ARI and NMI against known labels;
- ``baselines``: k-means, Ward and Gaussian-mixture runners;
- ``dsc``: the convolutional-LSTM autoencoder with a Student's t
  clustering layer; ``dec``: DEC on the feature vectors; ``student_t``:
  the shared kernel, target and loss;
- ``consensus``: co-association, spectral and NMF consensus, CSPA, MCLA,
  HBGF, Hungarian relabelling;
- ``members``: HEDGTC's base members and their Dask runner (no torch);
- ``gat``: HEDGTC's graph attention autoencoder; ``hedgtc``: the whole
  pipeline; ``temporal``: smoothing in time and the sticky hidden Markov
  refinement that use the persistence of regimes;
- ``spatial``: cells clustered in sliding windows, labels matched over
  time;
- ``control``: the progress (one dict with ``stage`` and ``fraction``)
  and cancel (``is_set()``) convention; ``errors``:
  ``ClusteringInputError``, ``ClusteringConfigError``,
  ``ClusteringCancelled``, ``ClusteringWarning``.

Not written: DTC, and the HEDGTC baselines HGPA.
"""
