"""A second model family for tests/test_lm_families.py: Llama (HF ``LlamaForCausalLM``), tiny.
One record; registering it is one line: ``register_family(LLAMA)``."""

from raretask.lm import ModelFamily, auto_load


def _config(p, vocab, max_seq_len, eos_id, pad_id):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=vocab, hidden_size=p.hidden, intermediate_size=p.intermediate,
                       num_hidden_layers=p.layers, num_attention_heads=p.heads, num_key_value_heads=p.heads,
                       max_position_embeddings=max_seq_len, tie_word_embeddings=False, eos_token_id=eos_id,
                       pad_token_id=pad_id, bos_token_id=None)


def _build(cfg):
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM(cfg)


LLAMA = ModelFamily("llama", config=_config, build=_build, load=auto_load,
                    blocks=lambda m: m.model.layers, mlp=lambda b: b.mlp)
