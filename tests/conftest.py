import pytest


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory):
    """A built corpus directory (1200-token BPE over synthetic text), shared by the LM tests."""
    pytest.importorskip("tokenizers")
    from lm_fixtures import write_text_corpus

    from raretask.lm import build_corpus

    root = tmp_path_factory.mktemp("lmcorpus")
    write_text_corpus(root / "text")
    build_corpus(root / "corpus", sources=[root / "text"], vocab_size=1200, heldout_fraction=0.05, doc_chars=1500)
    return root / "corpus"
