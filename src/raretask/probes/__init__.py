"""Probes of injected-task models (SPEC B5, B6): DAS, PCA regression, Fourier modes,
MLP localisation, gradient interference, one module each (and the interference monitor, a
``lm train`` callback), collected in a registry
(``register_probe``: a new probe is one module plus one registration line).
Needs ``raretask[lm]`` (DAS: ``raretask[probe]``)."""

from ._activations import label_logits, residuals
from ._das import counterfactual_pairs, das
from ._fourier import dft_basis, fourier_fractions, fourier_modes
from ._gradients import interference_row, reference, split_gradient, task_mask, token_losses
from ._localize import ablate_mlps, task_accuracy
from ._monitor import InterferenceMonitor, monitor_callbacks, monitor_plan
from ._pca import pca_r2
from ._registry import (BUILTIN_PROBES, Probe, ProbeContext, Setting, all_probes, get_probe, probe_names,
                        register_probe, unregister_probe)
from ._run import PROBES, ProbeConfig, probe_run

__all__ = ["BUILTIN_PROBES", "InterferenceMonitor", "monitor_callbacks", "monitor_plan", "PROBES", "Probe",
           "ProbeConfig", "ProbeContext", "Setting", "ablate_mlps", "all_probes", "counterfactual_pairs", "das",
           "dft_basis", "fourier_fractions", "fourier_modes", "get_probe", "interference_row", "label_logits",
           "pca_r2", "probe_names", "probe_run", "reference", "register_probe", "residuals", "split_gradient",
           "task_accuracy", "task_mask", "token_losses", "unregister_probe"]
