import os

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on two cores: one intra-op thread each (and in the commands
    # they start), instead of torch's one per core, which put four threads on two cores
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

# figures as PNG only (a PDF costs more than the PNG; the figure rules are checked on the drawn
# figure either way); tests/test_figures.py checks the default PNG + PDF
os.environ.setdefault("RARETASK_FIGURE_FORMATS", "png")


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


SHARED_FIXTURES = ("undisturbed", "long_ref", "planted_model", "done_run", "done", "report")
"""Module-scoped fixtures that train or run something (10-40 s each): under pytest-xdist each
worker that runs one of their tests builds them again, so their tests go to one worker
(``--dist loadgroup`` in the Makefile) and each is built once."""


def pytest_collection_modifyitems(items):
    # the slow tests first: two workers then finish together instead of one waiting on a late
    # long test (a stable sort: the order within each kind is kept)
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
    for item in items:
        for name in SHARED_FIXTURES:
            if name in getattr(item, "fixturenames", ()):
                item.add_marker(pytest.mark.xdist_group(f"{item.module.__name__}:{name}"))
                break
