"""Deep embedded clustering (DEC), the dense baseline of DSC.

DEC (Xie et al. 2016) clusters feature vectors with a dense autoencoder
and the Student's t clustering layer of :mod:`engine.clustering.dsc`. Here
each sample is one time step's feature vector ``X[t]`` (land cells times
variables, see :class:`engine.clustering.prepare.Samples`), so DEC sees
the same samples as k-means and DSC but no spatial neighbourhood and no
temporal context.

The network: dense layers ``F -> dec_widths -> dec_latent_size`` with
ReLU (the latent is linear), mirrored by the decoder. Training, shared with
DSC:

1. autoencoder pre-training on the reconstruction MSE;
2. k-means on the latent gives the initial centroids;
3. training of the encoder and centroids on ``KL(p || q)`` alone, as in
   DEC, where the decoder is dropped once pre-trained (keeping the
   reconstruction term as well would be IDEC, Guo et al. 2017); stop on
   the same label-change tolerance.

Differences from the published DEC: pre-training is end to end rather
than greedy layer-wise with denoising, and uses Adam rather than SGD, as
in common reimplementations.

References
----------
Xie, J., Girshick, R. and Farhadi, A. (2016), Unsupervised deep embedding
for clustering analysis, ICML, arXiv:1511.06335.

Guo, X. et al. (2017), Improved deep embedded clustering with local
structure preservation, IJCAI.
"""

from __future__ import annotations

import torch
from torch import nn

from engine.clustering.dsc import (
    CancelToken,
    DSCConfig,
    DSCResult,
    ProgressCallback,
    _check_k,
    _Task,
    _torch_threads,
    _train,
    choose_device,
)
from engine.clustering.prepare import Samples

__all__ = ["DenseAutoencoder", "run_dec"]


class DenseAutoencoder(nn.Module):
    """DEC's dense autoencoder.

    Parameters
    ----------
    n_features
        Input size ``F``.
    widths
        Hidden layer sizes of the encoder, in order; the decoder mirrors
        them.
    latent_size
        Size ``d`` of the latent vector.

    Shapes
    ------
    - input: ``(B, F)``
    - latent: ``(B, d)``
    - output: reconstruction ``(B, F)``
    """

    def __init__(self, n_features: int, widths: tuple[int, ...], latent_size: int):
        super().__init__()
        sizes = (int(n_features), *widths, int(latent_size))

        # Encoder: ReLU after each hidden layer, a linear latent.
        self.encoder = _dense_stack(sizes)

        # Decoder: the same sizes backwards, a linear output.
        self.decoder = _dense_stack(sizes[::-1])

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent and reconstruction of a batch of feature vectors."""
        latent = self.encoder(features)
        return latent, self.decoder(latent)


def run_dec(
    samples: Samples,
    k: int,
    config: DSCConfig | None = None,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
) -> DSCResult:
    """Cluster time steps with DEC on their feature vectors.

    Parameters
    ----------
    samples
        Prepared samples; DEC uses ``samples.X``, shape ``(T, F)``.
    k
        Number of clusters, 1 .. ``T``.
    config
        Settings; DEC uses ``dec_widths``, ``dec_latent_size`` and the
        training settings, not the convolutional ones nor ``gamma``.
        ``None`` uses :meth:`DSCConfig.quick`.
    progress, cancel
        As in :func:`engine.clustering.dsc.run_dsc`.

    Returns
    -------
    DSCResult
        With ``method="dec"``; ``latent`` is ``(T, dec_latent_size)``.

    Raises
    ------
    ClusteringInputError
        ``k`` is outside 1 .. ``T``.
    """
    config = config or DSCConfig.quick()
    _check_k(samples, k)

    with _torch_threads(config.threads):
        # Network and features on the chosen device, with the run's seed.
        device = choose_device(config.device)
        torch.manual_seed(config.seed)
        features = torch.from_numpy(samples.X.astype("float32")).to(device)
        network = DenseAutoencoder(
            features.shape[1], config.dec_widths, config.dec_latent_size
        ).to(device)

        def reconstruction_loss(
            reconstruction: torch.Tensor, index: torch.Tensor
        ) -> torch.Tensor:
            """Plain MSE: X holds no sea cells to leave out."""
            return nn.functional.mse_loss(reconstruction, features[index])

        # Pre-train, initialise by k-means, train on the KL alone.
        return _train(
            _Task(
                method="dec",
                network=network,
                forward=lambda index: network(features[index]),
                reconstruction_loss=reconstruction_loss,
                n_samples=features.shape[0],
                latent_size=config.dec_latent_size,
                reconstruction_weight=0.0,
                cluster_weight=1.0,
            ),
            k,
            config,
            device=device,
            progress=progress,
            cancel=cancel,
        )


def _dense_stack(sizes: tuple[int, ...]) -> nn.Sequential:
    """Linear layers between successive sizes, ReLU between them."""
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)
