import os

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on two cores: one intra-op thread each (and in the commands
    # they start), instead of torch's one per core, which put four threads on two cores
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")


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
