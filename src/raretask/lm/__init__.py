"""Language-model pretraining with injected tasks (SPEC Part B). Needs ``raretask[lm]``."""

from ._corpus import Corpus, build_corpus, default_documents, user_documents
from ._data import StepBatches
from ._injection import InjectionSchedule, inject
from ._evaluate import evaluate_runs
from ._families import FAMILIES, ModelFamily, auto_load, register_family
from ._models import PRESETS, ModelPreset, build_model, count_params, model_config, register_preset
from ._packed import train_pack
from ._sweep import run_sweep
from ._tasks import TASKS, TaskSet, build_tasks, ordinary_tokens
from ._tokenizer import Tok, fetch_olmo_tokenizer, load_tokenizer, train_bpe
from ._train import LMTrainConfig, TrainEnv, list_checkpoints, setup, train
from .callbacks import Batch, Callback, TensorBoard, Trainer

__all__ = ["auto_load", "Batch", "Callback", "setup", "TensorBoard", "Trainer", "TrainEnv", "build_corpus", "build_model",
           "build_tasks", "Corpus", "count_params", "default_documents", "evaluate_runs", "FAMILIES",
           "fetch_olmo_tokenizer", "inject", "InjectionSchedule", "list_checkpoints", "LMTrainConfig",
           "load_tokenizer", "model_config", "ModelFamily", "ModelPreset", "ordinary_tokens", "PRESETS",
           "register_family", "register_preset", "run_sweep", "StepBatches", "TASKS", "TaskSet", "Tok", "train",
           "train_bpe", "train_pack", "user_documents"]
