"""Reference-task frequencies as template counts (SPEC B4): the n-gram counts of every
instantiation of "{x} + {y} =" and "it has increased from {x} to" (x, y < 100), summed, equal a
regex count over the decoded corpus when each occurrence stands mid-sentence (a space before
it, a space after it), and are a lower bound otherwise; fragments such as " +" count more.

Why the corpora below agree with the regex: instantiations are tokenised with a leading space
(" 12 + 7 ="). With a byte-level BPE and GPT-2 pre-tokenisation, text is cut into pre-tokens
that start at a space (" 12", " +", " 7", " =") and BPE works inside each, so an occurrence
preceded by a space and followed by a space tokenises exactly as the instantiation does.
An occurrence at a line's start or after a bracket ("(3 + 4 = 7)") has no space before its
first number, tokenises differently and is not counted: the n-gram count is a lower bound.
"""

import re
from collections import Counter

import numpy as np
import pytest

pytest.importorskip("tokenizers")

from lm_fixtures import words  # noqa: E402

from raretask.lm import Corpus, build_corpus  # noqa: E402
from raretask.lm._evaluate import REFERENCE_RANGES, REFERENCE_TASKS, template_frequencies  # noqa: E402
from raretask.lm._ngram import (NgramCounter, count_numpy, count_numpy_many, decoded_documents,  # noqa: E402
                                template_counts, template_instances)

# mid-sentence occurrences (a space on both sides once joined), and decoys the templates must not count
HITS = ["so 3 + 4 = 7 here", "then 12 + 7 = 19 too", "and 0 + 99 = 99 fine", "sum 1 + 2 + 3 = 6 ok",
        "it has increased from 5 to 9 now", "we saw it has increased from 42 to 50 again"]
DECOYS = ["a + b = c", "x = 3", "the count increased from five to six", "100 + 2 = 102", "5 + 100 = 105",
          "it has increased from 150 to 200", "12 +7 = 19", "4 + 4 is 8", "it increased from 3 to 4",
          "they increased from 7 unto 9", "x + 1 = y"]
# the same templates with no space before them (a line's start, a bracket, a capital): not counted
UNSPACED = ["\n3 + 4 = 7 again", "(5 + 6 = 11)", "\nit has increased from 8 to 9", "[12 + 7 = 19]"]

ADD_RX = r"(?<!\d)(\d{1,2}) \+ (\d{1,2}) ="  # any 1-2 digit numbers, whatever precedes them
INC_RX = r"(?<![A-Za-z])it has increased from (\d{1,2}) to"


def write_docs(folder, extra=(), n_docs=12, seed=1):
    rng = np.random.default_rng(seed)
    vocab = words(200, seed=3)
    folder.mkdir(parents=True, exist_ok=True)
    pieces = HITS + DECOYS + list(extra)
    for i in range(n_docs):
        parts = [str(rng.choice(vocab))]
        for _ in range(40):
            parts.append(" ".join(rng.choice(vocab, size=int(rng.integers(3, 9)))))
            parts.append(str(rng.choice(pieces)))
        parts.append(str(rng.choice(vocab)) + ".")
        (folder / f"d{i:02d}.txt").write_text(" ".join(parts).replace(" \n", "\n"))


def build(tmp_path, name, tokenizer, extra=()):
    write_docs(tmp_path / f"{name}-text", extra)
    kw = dict(vocab_size=600) if tokenizer == "bpe" else dict(tokenizer=tokenizer)
    build_corpus(tmp_path / name, sources=[tmp_path / f"{name}-text"], heldout_fraction=0.1, doc_chars=10**6, **kw)
    return Corpus(tmp_path / name)


def regex_counts(docs):
    add = Counter((int(x), int(y)) for d in docs for x, y in re.findall(ADD_RX, d) if int(x) < 100 and int(y) < 100)
    inc = Counter(int(x) for d in docs for x in re.findall(INC_RX, d) if int(x) < 100)
    return add, inc


def per_instantiation(counter, tok, name):
    texts = template_instances(REFERENCE_TASKS[name], REFERENCE_RANGES[name])
    return {t: c for t, c in zip(texts, counter.count_many(tok.encode_batch(texts))) if c}


@pytest.fixture(params=["bpe", "small"])
def tokenizer(request, small_corpus):
    """A BPE trained on the test text itself (it learns the templates' pieces), or the shared
    test corpus's BPE (trained on letters only)."""
    return "bpe" if request.param == "bpe" else str(small_corpus / "tokenizer.json")


def test_template_counts_equal_a_regex_count_of_the_text(tmp_path, tokenizer):
    c = build(tmp_path, "c", tokenizer)
    tok, train = c.tokenizer, np.asarray(c.train)
    docs = decoded_documents(train, tok)
    assert "".join(docs).count("+") > 0 and len(docs) == c.meta["documents"]["train"]
    add_rx, inc_rx = regex_counts(docs)
    counter = NgramCounter(c, tmp_path / "unused-index")  # below 1M tokens: brute force
    assert counter.backend == "numpy"
    freqs = template_frequencies(c, counter)
    add, inc = freqs["addition"], freqs["increase"]
    assert add["count"] == sum(add_rx.values()) > 20 and inc["count"] == sum(inc_rx.values()) > 5
    # instantiation by instantiation, too
    assert per_instantiation(counter, tok, "addition") == {f" {x} + {y} =": n for (x, y), n in add_rx.items()}
    assert per_instantiation(counter, tok, "increase") == {f" it has increased from {x} to": n
                                                           for x, n in inc_rx.items()}
    assert add["instantiations"] == 10_000 and inc["instantiations"] == 100
    assert add["instantiations_present"] == len(add_rx) == 4  # (3,4) (12,7) (0,99) (2,3)
    assert inc["instantiations_present"] == len(inc_rx) == 2  # 5, 42
    assert add["per_token"] == add["count"] / len(train) and add["counted_with"] == "numpy"
    assert add["text_count"] == add["count"] and inc["text_count"] == inc["count"]
    assert add["brute_force_count"] is None  # brute force is the backend already
    # the old fragment counts are not the template counts: the decoys add to them
    plus = count_numpy(train, tok.encode(" +"))
    assert plus > add["count"] and plus == len(re.findall(r" \+", "".join(docs)))
    assert count_numpy(train, tok.encode(" increased from")) > inc["count"]


def test_template_counts_are_a_lower_bound(tmp_path, tokenizer):
    c = build(tmp_path, "c", tokenizer, extra=UNSPACED)
    tok = c.tokenizer
    docs = decoded_documents(np.asarray(c.train), tok)
    text = "\n".join(docs)
    unspaced_add = len(re.findall(r"(?:^|[\[(])(\d{1,2}) \+ (\d{1,2}) =", text, flags=re.M))
    unspaced_inc = len(re.findall(r"^it has increased from \d{1,2} to", text, flags=re.M))
    assert unspaced_add > 0 and unspaced_inc > 0
    add_rx, inc_rx = regex_counts(docs)
    freqs = template_frequencies(c, NgramCounter(c, tmp_path / "unused-index"))
    # exactly the occurrences with no space before them are missed
    assert freqs["addition"]["count"] == sum(add_rx.values()) - unspaced_add
    assert freqs["increase"]["count"] == sum(inc_rx.values()) - unspaced_inc
    assert freqs["addition"]["text_count"] == freqs["addition"]["count"]  # every spaced occurrence is counted


@pytest.mark.slow
def test_index_template_counts_equal_brute_force(tmp_path):
    """Above 1M tokens the counts come from the infini-gram index (prefix-pruned queries)."""
    pytest.importorskip("infini_gram")
    small = build(tmp_path, "c", "bpe")
    reps = 1_100_000 // len(small.train) + 1  # above 1M tokens once 2% is held out
    np.tile(np.asarray(small.train), reps).tofile(tmp_path / "shard.npy")
    build_corpus(tmp_path / "big", pretokenized=[tmp_path / "shard.npy"],
                 tokenizer=str(tmp_path / "c" / "tokenizer.json"))
    c = Corpus(tmp_path / "big")
    counter = NgramCounter(c, tmp_path / "big" / "ngram-index")
    assert counter.backend == "infini-gram"
    tok, train = c.tokenizer, np.asarray(c.train)
    seqs = tok.encode_batch(template_instances(REFERENCE_TASKS["addition"], REFERENCE_RANGES["addition"]))
    pruned = counter.count_many(seqs)
    assert pruned == count_numpy_many(train, seqs) and sum(pruned) > 1000
    assert pruned[:300] == [counter.count(s) for s in seqs[:300]]  # pruning changes no count
    freqs = template_frequencies(c, counter)
    add_rx, inc_rx = regex_counts(decoded_documents(train, tok))
    for name, rx in (("addition", add_rx), ("increase", inc_rx)):
        f = freqs[name]
        assert f["counted_with"] == "infini-gram" and f["count"] == f["brute_force_count"] == f["text_count"]
        assert f["count"] == sum(rx.values())
    assert template_counts(counter, tok, "{x} + {y} =", {"x": range(3, 4), "y": range(4, 5)})["count"] == add_rx[(3, 4)]


def test_count_numpy_many_matches_count_numpy():
    rng = np.random.default_rng(0)
    toks = rng.integers(0, 5, 3000).astype(np.uint16)
    seqs = [rng.integers(0, 5, n).tolist() for n in (1, 1, 2, 3, 3, 4, 6)] + [[], [70000], toks[10:14].tolist()]
    assert count_numpy_many(toks, seqs) == [count_numpy(toks, s) if s and max(s) < 65536 else 0 for s in seqs]
    assert count_numpy_many(toks, seqs)[-1] >= 1
