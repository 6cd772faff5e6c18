import os
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs two workers on two cores: one intra-op thread each (and in the commands
    # they start), instead of torch's one per core, which put four threads on two cores
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

# Compiled JAX kernels are shared through a persistent cache, one folder per test run: both
# pytest-xdist workers, the commands the tests start and the studies' worker processes compile
# the same simulator steps again and again (about 40% of a study test's CPU time once warm). A
# size limit turns on JAX's file lock, so the two workers never read an entry half written. The
# controller sets it before it starts its workers (they inherit it) and removes it at the end.
_JAX_CACHE = Path(tempfile.gettempdir()) / f"raretask-tests-jax-{os.getpid()}"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", str(_JAX_CACHE))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(2 << 30))

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


def built_once(tmp_path_factory, name: str, build) -> Path:
    """A folder built once per test session, shared by both pytest-xdist workers: the first to
    ask builds it (``build(folder)``) under a file lock, the other waits and reuses it. For
    module fixtures that train or run something (20-40 s), which each worker would otherwise
    build again. The folder is read, never written, by the tests."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the session's folder above the workers' own
    target = root / f"built-once-{name}"
    with FileLock(str(target) + ".lock"):
        if not (target / ".built").exists():
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True)
            build(target)
            (target / ".built").touch()
    return target


def cell_steps(root: Path) -> list[int]:
    """The steps of the study cell checkpoints under ``root/.cells`` (one being replaced right now
    is skipped)."""
    import numpy as np

    steps = []
    for ck in root.glob(".cells/*/checkpoint.npz"):
        try:
            with np.load(ck) as z:
                steps.append(int(z["step"]))
        except Exception:  # noqa: BLE001  being replaced right now
            continue
    return steps


def interruptible() -> None:
    """``preexec_fn`` of a command a test will Ctrl-C: SIGINT back to its default. A shell starts a
    background job (``nohup``, ``&``, CI runners) with SIGINT ignored; the test's commands inherit
    that, Python then never raises KeyboardInterrupt in them, and a Ctrl-C test interrupts nothing
    (seen: the LM one skipped itself in every CI run, the study one passed without a stop)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def pytest_collection_modifyitems(items):
    # Longest first. `make test` runs --maxschedchunk 1: each worker starts with 2 tests (the
    # 1st and 2nd longest to one, the 3rd and 4th to the other), then takes one more as each
    # ends, so the two finish together instead of one waiting on a late long test. A slow test
    # may give its usual seconds, `@pytest.mark.slow(seconds=80)`; a stable sort keeps the order
    # otherwise.
    def cost(item):
        mark = item.get_closest_marker("slow")
        return -1.0 if mark is None else float(mark.kwargs.get("seconds", 0))

    items.sort(key=cost, reverse=True)


def pytest_sessionfinish(session):
    if not os.environ.get("PYTEST_XDIST_WORKER"):  # the controller, after its workers
        shutil.rmtree(_JAX_CACHE, ignore_errors=True)
