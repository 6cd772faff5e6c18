"""Probes of injected-task models (SPEC B5, B6): DAS, PCA regression, Fourier modes,
MLP localisation, gradient interference. Needs ``raretask[lm]`` (DAS: ``raretask[probe]``)."""

from ._activations import label_logits, residuals
from ._das import counterfactual_pairs, das
from ._fourier import dft_basis, fourier_fractions, fourier_modes
from ._gradients import interference_row, reference, split_gradient, task_mask, token_losses
from ._localize import ablate_mlps, task_accuracy
from ._pca import pca_r2
from ._run import PROBES, ProbeConfig, probe_run

__all__ = ["PROBES", "ProbeConfig", "ablate_mlps", "counterfactual_pairs", "das", "dft_basis", "fourier_fractions",
           "fourier_modes", "interference_row", "label_logits", "pca_r2", "probe_run", "reference", "residuals",
           "split_gradient", "task_accuracy", "task_mask", "token_losses"]
