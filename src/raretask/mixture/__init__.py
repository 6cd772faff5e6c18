"""The synthetic task mixture: description (SPEC A1), theory (A4) and metrics (A3)."""

from ._metrics import (
    TaskMetrics,
    residual_F,
    row_space_alignment,
    signals,
    task_losses,
    task_metrics,
)
from ._inverse import Route, min_frequency, reweighted, tradeoff
from ._spec import MixtureSpec, validate_widths
from ._theory import (
    Corollary5,
    RareTaskThreshold,
    corollary5,
    critical_widths,
    feature_order,
    feature_ranks,
    frequent_matrix_diag,
    frequent_utilities,
    min_width_for,
    one_neuron_decay,
    one_neuron_flow,
    one_neuron_step,
    predicted_task_loss,
    predicted_total_loss,
    proposition6,
    retained_features,
    riemannian_gradient,
    sorted_utilities,
    theorem4_bound,
)

__all__ = [name for name in dir() if not name.startswith("_")]
