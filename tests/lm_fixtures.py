"""A small corpus for the LM tests: synthetic English-like text, a 1200-token BPE."""

import numpy as np

WORDS = None


def words(n: int = 400, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    out = set()
    while len(out) < n:
        out.add("".join(rng.choice(letters, size=int(rng.integers(3, 7)))))
    return sorted(out)


def write_text_corpus(folder, n_docs: int = 120, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    vocab = words()
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_docs):
        paras = []
        for _ in range(6):
            paras.append(" ".join(rng.choice(vocab, size=60)) + ".")
        (folder / f"doc{i:03d}.txt").write_text("\n\n".join(paras))
