"""Training the synthetic student (SPEC A2): reference trainer, fast engine, samplers."""

from ._config import MODES, TrainConfig
from ._engine import Engine, MemberState, grown_capacities, initial_capacities
from ._init import init_params
from ._reference import ReferenceTrainer
from ._runner import metric_rows, run_engine
from ._schedule import RecordSchedule
from ._sampling import (
    FunctionSampler,
    PriorSampler,
    RetentionSampler,
    TaskSampler,
    default_sampler,
)

__all__ = [name for name in dir() if not name.startswith("_")]
