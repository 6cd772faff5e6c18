"""Named, configurable studies reproducing the paper's synthetic experiments (SPEC A5)."""

STUDIES = ("phase", "residual", "retention", "long-horizon", "complexity", "rank1", "one-neuron", "upweight",
           "remedies")

from ._config import StudyConfig, apply_overrides, load_preset  # noqa: E402
from ._main import build_config, run_study  # noqa: E402

__all__ = ["STUDIES", "StudyConfig", "apply_overrides", "build_config", "load_preset", "run_study"]
