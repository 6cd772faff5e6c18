"""Model presets (SPEC B3): the paper's OLMo sizes, reproduced parameter for parameter, and
tiny presets for CPU work. Built as Hugging Face ``OlmoForCausalLM`` so checkpoints are plain
safetensors that pyvene, nnsight and TransformerLens load.

Why OLMo-1 classes: they give exactly the paper's counts, 16 L h^2 + 2 V h (no biases,
non-affine LayerNorm, SwiGLU, untied embeddings, V = 50304); the Olmo2 classes add norm
weights and do not. The table's "MLP" column is twice ``intermediate_size`` (SwiGLU).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import ConfigError
from ._families import FAMILIES, family

PAPER_VOCAB = 50304


@dataclass(frozen=True)
class ModelPreset:
    """Shape of one model size."""

    layers: int
    """Transformer blocks."""
    hidden: int
    """Residual width."""
    intermediate: int
    """SwiGLU hidden size (the table's MLP dim / 2)."""
    heads: int
    """Attention heads."""
    vocab: int | None
    """Embedding rows; None: the tokenizer's vocabulary rounded up to a multiple of 64."""
    paper_params: int | None = None
    """The paper's Table 2 count (with vocab 50304), when this is a paper size."""
    family: str = "olmo"
    """Model family (``raretask.lm.FAMILIES``); runs written before this field mean OLMo."""


PRESETS = {
    "4M": ModelPreset(8, 64, 256, 8, PAPER_VOCAB, 6_963_200),
    "20M": ModelPreset(16, 192, 768, 8, PAPER_VOCAB, 28_753_920),
    "300M": ModelPreset(16, 1024, 4096, 16, PAPER_VOCAB, 371_458_048),
    "1B": ModelPreset(16, 2048, 8192, 16, PAPER_VOCAB, 1_279_787_008),
    "4B": ModelPreset(16, 4096, 16384, 32, PAPER_VOCAB, 4_707_057_664),
    # CPU presets: the vocabulary follows the tokenizer (a small BPE makes them fast)
    "tiny": ModelPreset(2, 64, 256, 4, None),
    "tiny-4M": ModelPreset(8, 64, 256, 8, None),
    "small": ModelPreset(4, 128, 512, 4, None),
    # The CPU size ladder (``lm sweep cpu-scaling``): width is the paper's capacity axis, so
    # it varies at fixed depth (2 blocks) and fixed head size (12); non-embedding parameters
    # 16 L h^2 = 18,432 / 73,728 / 294,912 / 1,179,648 (64x). Trained on a BPE-2048 corpus:
    # its output layer costs V h per token against 16 L h^2 for the blocks, so from w96 up
    # the blocks dominate compute, and a smaller BPE would split the text into so many pieces
    # that too few single-token words remain for the tasks' value tokens.
    "w24": ModelPreset(2, 24, 96, 2, None),
    "w48": ModelPreset(2, 48, 192, 4, None),
    "w96": ModelPreset(2, 96, 384, 8, None),
    "w192": ModelPreset(2, 192, 768, 16, None),
}
LADDER = ("w24", "w48", "w96", "w192")
LARGE = ("300M", "1B", "4B")  # sharded with FSDP2 under torchrun


def preset(name: str) -> ModelPreset:
    if name not in PRESETS:
        raise ConfigError("preset", f"{name!r}", ", ".join(PRESETS))
    return PRESETS[name]


def register_preset(name: str, p: ModelPreset, replace: bool = False) -> ModelPreset:
    """Add a preset of a registered family; returns it. Refused: a family not registered (it
    would fail only when a model is built), a name taken by another preset unless ``replace``."""
    if not isinstance(p, ModelPreset):
        raise ConfigError("preset", f"{p!r} is not a ModelPreset", "register_preset(name, ModelPreset(...))")
    if not isinstance(name, str) or not name:
        raise ConfigError("preset", f"name {name!r}", "a non-empty string")
    if p.family not in FAMILIES:
        raise ConfigError("preset", f"{name!r} names family {p.family!r}, which is not registered",
                          ", ".join(FAMILIES) + " (or register_family first)")
    if name in PRESETS and PRESETS[name] != p and not replace:
        raise ConfigError("preset", f"{name!r} is already a preset", "a new name, or register_preset(..., replace=True)")
    PRESETS[name] = p
    return p


def model_config(name: str, tokenizer_vocab: int, max_seq_len: int = 4096, eos_id: int = 0, pad_id: int = 1):
    """The HF config of a preset (its family's). Paper presets keep vocab 50304 (their ids must fit)."""
    p = preset(name)
    vocab = p.vocab if p.vocab is not None else -(-tokenizer_vocab // 64) * 64
    if tokenizer_vocab > vocab:
        raise ConfigError("preset", f"{name} has {vocab} embeddings < tokenizer vocabulary {tokenizer_vocab}",
                          "a tokenizer that fits, or a tiny preset")
    return family(p.family).config(p, vocab, max_seq_len, eos_id, pad_id)


def build_model(name: str, tokenizer_vocab: int, max_seq_len: int = 4096, eos_id: int = 0, pad_id: int = 1,
                seed: int = 0, device: str = "cpu"):
    """A freshly initialised model of the preset's family (seeded). ``device="meta"`` allocates nothing."""
    import torch

    cfg = model_config(name, tokenizer_vocab, max_seq_len, eos_id, pad_id)
    torch.manual_seed(seed)
    with torch.device(device):
        model = family(preset(name).family).build(cfg)
    return model


def non_embedding_params(name: str) -> int:
    """Parameters outside the embedding and output layers: 16 L h^2 for the OLMo-1 blocks
    (4 h^2 attention + 3 h x intermediate SwiGLU per block, when intermediate = 4 h)."""
    p = preset(name)
    return p.layers * (4 * p.hidden * p.hidden + 3 * p.hidden * p.intermediate)


def step_flops(preset: str, vocab: int, batch_size: int, seq_len: int) -> float:
    """Model FLOPs of one training step (forward and backward): 6 N + 12 L T h per token."""
    hf = model_config(preset, vocab, seq_len)
    n = non_embedding_params(preset) + hf.vocab_size * hf.hidden_size
    return batch_size * seq_len * (6.0 * n + 12.0 * hf.num_hidden_layers * seq_len * hf.hidden_size)


def count_params(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def describe(name: str) -> dict:
    return {"preset": name, **asdict(preset(name))}
