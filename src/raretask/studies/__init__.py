"""Named, configurable studies reproducing the paper's synthetic experiments (SPEC A5).

A study is one module plus one ``register_study`` line (see ``_registry``): ``cells`` (or
``run``) and ``analyze``, returning ``Cell`` and ``Analysis`` records; ``run_study`` runs one
in a resumable run folder and writes its results, figures and report.
"""

from ._registry import Study, register_study, study_module, study_names

STUDIES = study_names()
"""The built-in studies (``study_names()`` also lists those registered later)."""

from ._config import StudyConfig, apply_overrides, load_preset  # noqa: E402
from ._main import build_config, run_study  # noqa: E402
from ._run import Analysis, Cell  # noqa: E402

__all__ = ["STUDIES", "Analysis", "Cell", "Study", "StudyConfig", "apply_overrides", "build_config", "load_preset",
           "register_study", "run_study", "study_module", "study_names"]
