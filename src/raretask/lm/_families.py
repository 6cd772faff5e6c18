"""Model families (issue 14): one record per architecture, in one registry.

Adding a family is one new record plus one ``register_family(...)`` line; a preset names its
family (``ModelPreset.family``, default ``"olmo"``). A family's ``name`` is the Hugging Face
``config.model_type`` of its models, so a loaded checkpoint finds its family by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..errors import ConfigError


@dataclass(frozen=True)
class ModelFamily:
    """How raretask builds, loads and takes apart one architecture."""

    name: str
    """Registry key; equal to the HF ``config.model_type`` of the family's models."""
    config: Callable[..., Any]
    """``config(preset, vocab, max_seq_len, eos_id, pad_id)`` -> the HF config."""
    build: Callable[[Any], Any]
    """``build(config)`` -> a freshly initialised model."""
    load: Callable[[Any], Any]
    """``load(path)`` -> the model of a checkpoint folder."""
    blocks: Callable[[Any], Any]
    """``blocks(model)`` -> the list of decoder layers (FSDP shards each; probes walk them)."""
    mlp: Callable[[Any], Any]
    """``mlp(block)`` -> the block's MLP module (its output is what ``localize`` ablates)."""
    mlp_in: tuple[str, ...] = ("gate_proj", "up_proj")
    """The MLP's input projections (``nn.Linear``, out_features = its hidden units): a unit's
    parameters include its row of each. SwiGLU: gate and up; GPT-NeoX: ("dense_h_to_4h",)."""
    mlp_out: str = "down_proj"
    """The MLP's output projection: a unit's parameters include its column (GPT-NeoX: "dense_4h_to_h")."""

    def mlp_weights(self, mlp) -> list:
        """The weights of ``mlp``'s parts, input projections first (rows = units), then the
        output projection (columns = units)."""
        try:
            return [getattr(mlp, n).weight for n in (*self.mlp_in, self.mlp_out)]
        except AttributeError as e:
            raise ConfigError("family", f"{self.name}: its MLP has no part named in mlp_in/mlp_out ({e})",
                              "the names of the MLP's input and output nn.Linear modules") from None


FAMILIES: dict[str, ModelFamily] = {}


def register_family(fam: ModelFamily, replace: bool = False) -> ModelFamily:
    """Add ``fam`` under ``fam.name``; returns it. A name already taken by another family is
    refused unless ``replace`` (the module that registered it may register it again: a reload)."""
    if not isinstance(fam, ModelFamily):
        raise ConfigError("family", f"{fam!r} is not a ModelFamily record", "register_family(ModelFamily(...))")
    old = FAMILIES.get(fam.name)
    same_module = old is not None and getattr(old.build, "__module__", None) == getattr(fam.build, "__module__", "")
    if old is not None and old is not fam and not same_module and not replace:
        raise ConfigError("family", f"{fam.name!r} is already registered (by {old.build.__module__})",
                          "a new name, or register_family(..., replace=True)")
    FAMILIES[fam.name] = fam
    return fam


def family(name: str) -> ModelFamily:
    if name not in FAMILIES:
        raise ConfigError("family", f"{name!r}", ", ".join(FAMILIES))
    return FAMILIES[name]


def family_of(model) -> ModelFamily:
    """The family of a built or loaded model (by ``config.model_type``; DDP/FSDP wrappers unwrapped)."""
    inner = model.module if hasattr(model, "module") else model
    return family(inner.config.model_type)


def blocks(model):
    inner = model.module if hasattr(model, "module") else model
    return family_of(inner).blocks(inner)


def mlps(model) -> list:
    inner = model.module if hasattr(model, "module") else model
    fam = family_of(inner)
    return [fam.mlp(b) for b in fam.blocks(inner)]


def auto_load(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path)


def _olmo_config(p, vocab: int, max_seq_len: int, eos_id: int, pad_id: int):
    from transformers import OlmoConfig

    return OlmoConfig(vocab_size=vocab, hidden_size=p.hidden, intermediate_size=p.intermediate,
                      num_hidden_layers=p.layers, num_attention_heads=p.heads, num_key_value_heads=p.heads,
                      max_position_embeddings=max_seq_len, tie_word_embeddings=False, clip_qkv=8.0,
                      eos_token_id=eos_id, pad_token_id=pad_id, bos_token_id=None, attention_bias=False)


def _olmo_build(cfg):
    from transformers import OlmoForCausalLM

    return OlmoForCausalLM(cfg)


register_family(ModelFamily("olmo", config=_olmo_config, build=_olmo_build, load=auto_load,
                            blocks=lambda m: m.model.layers, mlp=lambda b: b.mlp))
