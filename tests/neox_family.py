"""A non-SwiGLU model family for tests/test_lm_families.py: GPT-NeoX through
``AutoModelForCausalLM``, registered without a wrapper: the record names its MLP parts."""

from raretask.lm import ModelFamily, auto_load


def _config(p, vocab, max_seq_len, eos_id, pad_id):
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(vocab_size=vocab, hidden_size=p.hidden, intermediate_size=p.intermediate,
                         num_hidden_layers=p.layers, num_attention_heads=p.heads, max_position_embeddings=max_seq_len,
                         tie_word_embeddings=False, eos_token_id=eos_id, pad_token_id=pad_id, bos_token_id=eos_id)


def _build(cfg):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_config(cfg)


NEOX = ModelFamily("gpt_neox", config=_config, build=_build, load=auto_load,
                   blocks=lambda m: m.gpt_neox.layers, mlp=lambda b: b.mlp,
                   mlp_in=("dense_h_to_4h",), mlp_out="dense_4h_to_h")
