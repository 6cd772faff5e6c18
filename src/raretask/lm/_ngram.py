"""n-gram counts in the training corpus (SPEC B4), with an infini-gram suffix-array index
built locally from the corpus tokens (no tokenizer download: we write infini-gram's
``tokenized``/``offset`` files ourselves and run only its suffix-array step).
"""

from __future__ import annotations

import re
import resource
import subprocess
import sys
from collections import defaultdict
from itertools import product
from pathlib import Path

import numpy as np

from ..errors import ConfigError


def build_index(corpus, index_dir: str | Path) -> Path:
    """Index the corpus's train tokens (documents split at EOS). Returns the index folder.

    The index is built in a temporary folder beside ``index_dir`` and renamed when complete, so
    a kill never leaves half an index where a later call would use it."""
    import os
    import shutil

    final = Path(index_dir).resolve()
    if (final / "table.0").exists():
        return final
    if corpus.meta["dtype"] != "uint16":
        raise ConfigError("corpus", "infini-gram indexing here supports uint16 corpora", "a vocabulary <= 65535")
    if final.exists():  # what an earlier version's interrupted build left: no table, not an index
        shutil.rmtree(final)
    for stale in final.parent.glob(f".{final.name}.*.tmp"):  # builds whose process is gone
        if not _alive(stale.name.split(".")[-2]):
            shutil.rmtree(stale, ignore_errors=True)
    out = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    out.mkdir(parents=True)
    try:
        _build(corpus, out)
        try:
            os.replace(out, final)
            _record_in_corpus(final)
        except OSError:  # another process finished the same index first: use that one
            if not (final / "table.0").exists():
                raise
            shutil.rmtree(out, ignore_errors=True)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    return final


def _record_in_corpus(index: Path) -> None:
    """Enter a new index in its corpus folder's per-file record (under the corpus's lock), so
    that ``lm corpus build --restart`` knows it for raretask's and removes it with the corpus."""
    from ..runfolder import MARKER, record
    from ._corpus import corpus_folder

    if not (index.parent / MARKER).exists():
        return
    folder = corpus_folder(index.parent)
    folder.wait = 60.0
    folder.lock()
    try:
        record(index)
    finally:
        folder.release()


def _alive(pid: str) -> bool:
    import os

    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def _build(corpus, out: Path) -> None:
    ids = np.asarray(corpus.train, np.uint16)
    cuts = np.flatnonzero(ids == corpus.tokenizer.eos_id) + 1
    starts = np.r_[0, cuts[:-1]] if len(cuts) else np.asarray([0])
    ends = cuts if len(cuts) else np.asarray([len(ids)])
    offsets, pos = [], 0
    with open(out / "tokenized.0", "wb") as f:
        for a, b in zip(starts, ends):
            content = b"\xff\xff" + ids[a:b].tobytes()  # infini-gram's document separator, then the tokens
            offsets.append(pos)
            f.write(content)
            pos += len(content)
    np.asarray(offsets, np.uint64).tofile(out / "offset.0")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    ulimit = hard if hard != resource.RLIM_INFINITY else 65536
    r = subprocess.run([sys.executable, "-m", "infini_gram.indexing", "--data_dir", str(out), "--save_dir", str(out),
                        "--token_dtype", "u16", "--cpus", "2", "--mem", "2", "--ulimit", str(min(ulimit, 65536))],
                       capture_output=True, text=True)
    if r.returncode != 0 or not (out / "table.0").exists():
        raise RuntimeError(f"infini-gram indexing failed: {r.stderr[-500:]}")


MIN_INDEX_TOKENS = 1_000_000  # infini-gram's suffix-array build assumes parts above ~100 KB


class NgramCounter:
    """Exact n-gram counts over a corpus: an infini-gram index, checked against brute force
    on a few n-grams when opened; small corpora (below 1M tokens, where infini-gram's build
    misbehaves) and any index that fails the check are counted by brute force instead.
    ``backend`` says which."""

    def __init__(self, corpus, index_dir: str | Path, seed: int = 0):
        self.tokens = np.asarray(corpus.train)
        self.backend = "numpy"
        if len(self.tokens) < MIN_INDEX_TOKENS or corpus.meta["dtype"] != "uint16":
            return
        from infini_gram.engine import InfiniGramEngine

        self.dir = build_index(corpus, index_dir)
        self.engine = InfiniGramEngine(index_dir=str(self.dir), eos_token_id=corpus.tokenizer.eos_id,
                                       vocab_size=65535, token_dtype="u16")
        rng = np.random.default_rng(seed)
        probes = [self.tokens[i:i + n].tolist() for i, n in zip(rng.integers(0, len(self.tokens) - 4, 4), (1, 2, 3, 3))]
        if all(self._index_count(p) == count_numpy(self.tokens, p) for p in probes):
            self.backend = "infini-gram"

    def _index_count(self, ids: list[int]) -> int:
        r = self.engine.count(input_ids=[int(i) for i in ids])
        if "error" in r:
            raise RuntimeError(r["error"])
        return int(r["count"])

    def count(self, ids: list[int]) -> int:
        """Occurrences of the token sequence ``ids`` in the training split."""
        if self.backend == "infini-gram":
            return self._index_count(ids)
        return count_numpy(self.tokens, ids)

    def count_many(self, seqs: list[list[int]]) -> list[int]:
        """``[self.count(s) for s in seqs]``, batched: with the index, a sequence is queried only
        when its first half occurs (a prefix that never occurs has no extension that does);
        by brute force, one vectorised pass over the tokens (``count_numpy_many``)."""
        if self.backend != "infini-gram":
            return count_numpy_many(self.tokens, seqs)
        known = self._index_count_pruned({tuple(int(i) for i in s) for s in seqs})
        return [known[tuple(int(i) for i in s)] for s in seqs]

    def _index_count_pruned(self, seqs: set[tuple]) -> dict[tuple, int]:
        out = {s: 0 for s in seqs if not s}
        longer = [s for s in seqs if len(s) > 1]
        out.update({s: self._index_count(list(s)) for s in seqs if len(s) == 1})
        if len(longer) <= 16:  # pruning would cost about as many queries as it saves
            out.update({s: self._index_count(list(s)) for s in longer})
            return out
        half = {s: s[:len(s) // 2] for s in longer}
        prefix = self._index_count_pruned(set(half.values()))
        out.update({s: self._index_count(list(s)) if prefix[half[s]] else 0 for s in longer})
        return out


def count_numpy(tokens: np.ndarray, ids: list[int]) -> int:
    """The same count by brute force (a check of the index, and a fallback)."""
    ids = np.asarray(ids, tokens.dtype)
    n = len(ids)
    if n == 0 or len(tokens) < n:
        return 0
    hit = tokens[: len(tokens) - n + 1] == ids[0]
    for j in range(1, n):
        hit &= tokens[j: len(tokens) - n + 1 + j] == ids[j]
    return int(hit.sum())


def count_numpy_many(tokens: np.ndarray, seqs: list[list[int]]) -> list[int]:
    """``[count_numpy(tokens, s) for s in seqs]`` in one pass per sequence length: the positions
    whose first token starts some sequence, narrowed position by position to those whose
    tokens appear at that offset in some sequence, then the surviving windows tallied exactly."""
    tokens = np.asarray(tokens)
    out = [0] * len(seqs)
    by_len: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(seqs):
        by_len[len(s)].append(i)
    for n, idx in by_len.items():
        if n == 0 or len(tokens) < n:
            continue
        q = np.asarray([list(seqs[i]) for i in idx], np.int64)
        if q.min() < 0 or q.max() > np.iinfo(tokens.dtype).max:  # an id the corpus cannot hold
            ok = (q.min(1) >= 0) & (q.max(1) <= np.iinfo(tokens.dtype).max)
            idx, q = [i for i, k in zip(idx, ok) if k], q[ok]
            if not idx:
                continue
        q = q.astype(tokens.dtype)
        pos = np.flatnonzero(np.isin(tokens[: len(tokens) - n + 1], np.unique(q[:, 0])))
        for j in range(1, n):
            pos = pos[np.isin(tokens[pos + j], np.unique(q[:, j]))]
        windows = tokens[pos[:, None] + np.arange(n)] if len(pos) else np.empty((0, n), tokens.dtype)
        rows, counts = np.unique(windows, axis=0, return_counts=True)
        tally = {r.tobytes(): int(c) for r, c in zip(rows, counts)}
        for i, row in zip(idx, q):
            out[i] = tally.get(row.tobytes(), 0)
    return out


def template_instances(template: str, ranges: dict[str, range], lead: str = " ") -> list[str]:
    """Every instantiation of ``template`` (``str.format`` fields, each over its range), each
    prefixed by ``lead`` (default a space: the template as it appears mid-sentence)."""
    keys = list(ranges)
    return [lead + template.format(**dict(zip(keys, v))) for v in product(*(ranges[k] for k in keys))]


def template_regex(template: str, ranges: dict[str, range], lead: str = " ") -> re.Pattern:
    """A regex (a lookahead, so overlapping occurrences count) matching ``lead + template``
    with each field a run of ASCII digits; ``text_occurrences`` keeps the matches whose
    values are canonical (no leading zero) and in range."""
    parts = re.split(r"\{(\w+)\}", template)
    body = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[0-9]+)" for i, p in enumerate(parts))
    if set(parts[1::2]) != set(ranges) or len(parts[1::2]) != len(ranges):
        raise ValueError(f"{template!r}: each of the fields {sorted(ranges)} must appear exactly once")
    return re.compile(f"(?={re.escape(lead)}{body})")


def text_occurrences(texts: list[str], template: str, ranges: dict[str, range], lead: str = " ") -> int:
    """Occurrences (overlapping) in ``texts`` of any instantiation of ``lead + template``: the
    sum over ``template_instances`` of their substring counts, in one regex pass."""
    rx = template_regex(template, ranges, lead)
    n = 0
    for t in texts:
        for m in rx.finditer(t):
            v = m.groupdict()
            n += all(str(int(v[k])) == v[k] and int(v[k]) in ranges[k] for k in ranges)
    return n


def decoded_documents(tokens: np.ndarray, tok, batch: int = 512) -> list[str]:
    """The documents of a token array (split at EOS), decoded."""
    tokens = np.asarray(tokens)
    cuts = np.flatnonzero(tokens == tok.eos_id)
    starts, ends = np.r_[0, cuts + 1], np.r_[cuts, len(tokens)]
    spans = [(a, b) for a, b in zip(starts, ends) if b > a]
    docs = []
    for i in range(0, len(spans), batch):
        docs += tok.inner.decode_batch([tokens[a:b].tolist() for a, b in spans[i:i + batch]])
    return docs


def template_counts(counter: NgramCounter, tok, template: str, ranges: dict[str, range], lead: str = " ",
                    top: int = 10) -> dict:
    """n-gram count of a template: for each instantiation (``template_instances``: with a
    leading space by default, as the template appears mid-sentence), the count of its
    tokenisation as one n-gram, summed, as the paper's infini-gram counts were.

    A lower bound, in two ways. (1) On the occurrences of the instantiated texts as substrings
    of the corpus text (``text_occurrences``): every n-gram hit is one, and with a GPT-2-style
    byte-level BPE (pre-tokens start at a space) the leading space pins the first token and
    the words inside, so an occurrence is missed only where its last token merges with what
    follows (e.g. " =" followed by "=" tokenised as " =="). (2) On the template's occurrences
    in any context: those with no space before them (a line's start, after a bracket) are
    tokenised differently and not counted; counting those variants too could over-count
    (the unspaced "12 + 7 =" can hide inside " 112 + 7 =").
    Returns the total, the number of instantiations, how many occur, and the ``top`` most
    frequent."""
    texts = template_instances(template, ranges, lead)
    counts = counter.count_many(tok.encode_batch(texts))
    order = np.argsort(counts, kind="stable")[::-1][:top]
    return {"template": template, "counted_as": lead + template, "count": int(sum(counts)),
            "instantiations": len(texts), "instantiations_present": int(sum(c > 0 for c in counts)),
            "counted_with": counter.backend, "most_frequent": {texts[i]: int(counts[i]) for i in order if counts[i]}}
