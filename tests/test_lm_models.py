"""Model presets (SPEC B3): the paper's parameter counts, exactly."""

import pytest

from raretask import ConfigError
from raretask.lm import PRESETS, build_model, count_params

pytest.importorskip("transformers")


@pytest.mark.parametrize("name, params", [("4M", 6_963_200), ("20M", 28_753_920), ("300M", 371_458_048),
                                          ("1B", 1_279_787_008), ("4B", 4_707_057_664)])
def test_paper_presets_reproduce_table_2(name, params):
    model = build_model(name, tokenizer_vocab=50280, device="meta")  # no memory allocated
    assert count_params(model) == params == PRESETS[name].paper_params
    p = PRESETS[name]
    assert 16 * p.layers * p.hidden**2 + 2 * 50304 * p.hidden == params


def test_tiny_presets_follow_the_tokenizer():
    m = build_model("tiny", tokenizer_vocab=600)
    assert m.config.vocab_size == 640 and count_params(m) < 500_000


def test_vocabulary_must_fit():
    with pytest.raises(ConfigError, match="invalid preset"):
        build_model("4M", tokenizer_vocab=60_000, device="meta")
    with pytest.raises(ConfigError, match="invalid preset"):
        build_model("7B", tokenizer_vocab=600, device="meta")
