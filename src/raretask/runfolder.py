"""Run folders: the one layer that owns a run's directory.

Every folder raretask writes a run into (a study's ``--out``, an engine cell, an LM training
run, an evaluation or probe report, a sweep) is a ``RunFolder``::

    .raretask-run.json   marker: {"kind", "raretask_version", "created"}; says the folder is
                         a raretask run of that kind, so --restart may clear it
    .lock                exclusive lock (filelock) held for the run's lifetime
    .lock.json           who holds it: pid, host, command, since
    ...                  the run's own files, written with ``atomic_write`` & co.

    .raretask-files.json per-file record: {path relative to the folder: sha256} of every file
                         raretask wrote there (``record``; ``atomic_write`` & co. record by
                         themselves while this process holds the folder's lock)

Rules: a folder that exists, is not empty and carries no marker is never written into or
deleted; ``restart`` deletes only files raretask wrote, found under the entries the run's kind
declares as its own (``owned``) and recorded with an unchanged checksum (in the folder's
per-file record or a nested run's); any other file there (a user's figure, notes, a copied
checkpoint, a recorded file edited since) is kept, and ``clear`` names it. A folder written
before per-file records (marker, no record) is adopted when opened: the files under its owned
entries are recorded as raretask's, as the name patterns alone assumed before. A second writer
gets one line naming the holder.
Writes go through ``atomic_write`` (temporary file in the same folder, fsync, rename), so a
kill leaves either the old or the new file, never half of one. Part logs (``PartLog``)
record name, rows and sha256 of every completed result part, so a missing or corrupt part is
detected instead of silently dropped.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

MARKER = ".raretask-run.json"
LOCK = ".lock"
LOCK_INFO = ".lock.json"
FILES = ".raretask-files.json"
_BOOKKEEPING = (MARKER, LOCK, LOCK_INFO, FILES)


from ._json import json_default  # noqa: F401  (re-exported: runfolder.json_default)
from .errors import RaretaskError


class RunFolderError(RaretaskError):
    """A run folder cannot be used as asked (not a run, in use, corrupt); exit status 1."""


# ------------------------------------------------------------------ atomic writes
def _tmp_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` so that a reader (or a kill) sees the old file or the whole
    new one: a temporary file beside it, fsync, rename (``atomic_path``). The temporary is
    removed on error, and an OSError names ``path``."""
    raw = data.encode() if isinstance(data, str) else data
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(raw)


@contextlib.contextmanager
def atomic_path(path: str | Path, size: int | None = None):
    """``atomic_write`` for writers that need a file of their own (a memmap, ``torch.save``,
    safetensors): yields a temporary path beside ``path``; when the block ends without an error
    the file is fsynced and renamed to ``path``, otherwise removed. ``size``: reserve that many
    bytes first (``os.posix_fallocate``), so that a full disk is an OSError naming ``path``
    here rather than a SIGBUS when a memmap's pages are written later."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a file", str(path))
    tmp = _tmp_for(path)
    try:
        if size is not None:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                if size > 0:
                    os.posix_fallocate(fd, 0, size)
            finally:
                os.close(fd)
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        record(path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, OSError) and (e.filename is None or str(e.filename) == str(tmp)):  # name the file
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=json_default)


def atomic_json(path: str | Path, obj: Any) -> None:
    atomic_write(path, to_json(obj))


def atomic_parquet(df, path: str | Path) -> None:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    atomic_write(path, buf.getvalue())


def atomic_savez(path: str | Path, **arrays) -> None:
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write(path, buf.getvalue())


FIGURE_FORMATS = ("png", "pdf", "svg")
"""Formats ``atomic_figure`` writes, named by the path's suffix."""


FORMATS_ENV = "RARETASK_FIGURE_FORMATS"
"""Environment variable: the formats each figure is saved in, comma-separated (default
``png,pdf``; PNG always, since reports embed it; ``svg`` may be added). The test suite sets
``png``: a PDF costs more than the PNG and the rules are checked on the drawn figure either way."""


def figure_formats() -> tuple[str, ...]:
    """The formats of ``FORMATS_ENV``, checked: a ConfigError names an unknown one or a list
    without png."""
    from .errors import ConfigError

    raw = os.environ.get(FORMATS_ENV, "png,pdf")
    fmts = tuple(dict.fromkeys(f.strip().lower().lstrip(".") for f in raw.split(",") if f.strip()))
    bad = [f for f in fmts if f not in FIGURE_FORMATS]
    if bad or "png" not in fmts:
        raise ConfigError(FORMATS_ENV, f"{raw!r}" + (f" ({', '.join(bad)} unknown)" if bad else " (no png)"),
                          "a comma-separated list of " + ", ".join(FIGURE_FORMATS) + " that includes png")
    return fmts


def atomic_figure(fig, path: str | Path, **kw) -> None:
    """Save a matplotlib figure in the format its suffix names (.png, .pdf, .svg; PNG when the
    path has no suffix). Another suffix is a ValueError: its bytes would not be what it says."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix and suffix not in FIGURE_FORMATS:
        raise ValueError(f"{path}: a figure is written as .png, .pdf or .svg, not .{suffix}")
    buf = io.BytesIO()
    fig.savefig(buf, format=suffix or "png", **kw)
    atomic_write(path, buf.getvalue())


def read_json(path: str | Path, what: str | None = None) -> Any:
    """Parse a JSON file raretask wrote; a corrupt one is a RunFolderError naming it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise RunFolderError(f"{what or path.name} is corrupt ({path}: {e.__class__.__name__}); "
                             "delete it or re-run with --restart") from None


def read_cached(path: str | Path, key: Any, expect: type = object) -> Any:
    """The payload of a cache file ``write_cached`` wrote with exactly this ``key`` (and of type
    ``expect``); None when it is missing, damaged or stale (the caller recomputes)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        d = read_json(path)
    except RunFolderError:
        return None
    ok = isinstance(d, dict) and d.get("key") == key and isinstance(d.get("payload"), expect)
    return d["payload"] if ok else None


def write_cached(path: str | Path, key: Any, payload: Any) -> None:
    """Cache ``payload`` under ``key`` (everything the result depends on), atomically."""
    atomic_json(path, {"key": key, "payload": payload})


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ------------------------------------------------------------------ part logs
class PartLog:
    """Completed result parts of a run: ``{path relative to the run: {"rows", "sha256"}}``.

    Kept inside the run's checkpoint (so it moves atomically with the state it describes);
    ``problems`` says which recorded parts are missing or differ from their checksum."""

    def __init__(self, entries: dict | None = None):
        self.entries: dict[str, dict] = dict(entries or {})

    def add(self, root: Path, path: Path, rows: int) -> None:
        self.entries[path.relative_to(root).as_posix()] = {"rows": int(rows), "sha256": sha256_file(path)}

    def problems(self, root: Path) -> list[str]:
        """Recorded parts under ``root`` that are missing or fail their checksum."""
        return [name for name, e in self.entries.items()
                if not (root / name).is_file() or sha256_file(root / name) != e["sha256"]]

    def to_json(self) -> str:
        return json.dumps(self.entries, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "PartLog":
        return cls(json.loads(text))


# ------------------------------------------------------------------ per-file records
_HELD: dict[str, "RunFolder"] = {}
"""Run folders whose lock this process holds, by absolute (and real) path."""


def _abs(p: str | Path) -> str:
    return os.path.abspath(p)


def _owner(path: str) -> "RunFolder | None":
    """The innermost held run folder containing ``path``."""
    for cand in (path, os.path.realpath(path)):
        parent = os.path.dirname(cand)
        while True:
            if parent in _HELD:
                return _HELD[parent]
            up = os.path.dirname(parent)
            if up == parent:
                break
            parent = up
    return None


def record(path: str | Path) -> None:
    """Record a file raretask wrote (or every file under a folder it wrote) in the per-file
    record of the held run folder that contains it; nothing when no held folder does. The
    ``atomic_*`` writers call it; writers of their own (a tensorboard log) call it when done."""
    if not _HELD:
        return
    path = _abs(path)
    folder = _owner(path)
    if folder is None or os.path.basename(path) in _BOOKKEEPING:
        return
    files = _files_under(Path(path))
    base = Path(_abs(folder.path))
    for q in files:
        rel = q.relative_to(base) if q.is_relative_to(base) else Path(os.path.realpath(q)).relative_to(
            os.path.realpath(base))
        folder._files[rel.as_posix()] = sha256_file(q)
    if files:
        folder._save_files()


def record_move(src: str | Path, dst: str | Path) -> None:
    """After ``os.replace(src, dst)`` of a folder raretask wrote: its recorded files move with it."""
    src, dst = _abs(src), _abs(dst)
    folder = _owner(dst)
    if folder is None:
        return
    base = _abs(folder.path)
    a, b = os.path.relpath(src, base) + "/", os.path.relpath(dst, base) + "/"
    moved = {(b + k[len(a):] if k.startswith(a) else k): v for k, v in folder._files.items()
             if not k.startswith(b)}
    folder._files = moved
    folder._save_files()


def _files_under(p: Path) -> list[Path]:
    """``p`` itself when it is a file, else every file below it."""
    if p.is_file():
        return [p]
    return [q for q in p.rglob("*") if q.is_file()] if p.is_dir() else []


def _read_files(folder: Path) -> dict[str, str] | None:
    """A folder's per-file record; None when it has none (or an unreadable one)."""
    try:
        d = json.loads((folder / FILES).read_text())
    except (OSError, ValueError):
        return None
    return d if isinstance(d, dict) else None


# ------------------------------------------------------------------ the folder
def _holder(folder: Path) -> str:
    info = folder / LOCK_INFO
    try:
        h = json.loads(info.read_text())
        return f"pid {h.get('pid')} on {h.get('host')} ({h.get('command')}, since {h.get('since')})"
    except (OSError, ValueError):
        return "another process"


class RunFolder:
    """A run's directory: marker, lock and owned files (module docstring).

    Use as a context manager: ``with RunFolder(out, "study", owned=[...]).open(restart):``
    validates the path, creates it, takes the lock (or raises RunFolderError naming the
    holder) and writes the marker; the lock is released on exit."""

    def __init__(self, path: str | Path, kind: str, owned: Iterable[str] = (), wait: float = 0.0,
                 legacy: Callable[[Path], bool] | None = None):
        """owned: names or glob patterns of the entries this kind writes (restart deletes
        those); wait: seconds to wait for a held lock (0: fail at once, < 0: wait for ever);
        legacy: recognises a run of this kind written before markers existed (it is adopted)."""
        self.path = Path(path)
        self.kind = kind
        self.owned = list(owned)
        self.wait = wait
        self.legacy = legacy
        self._lock = None
        self._files: dict[str, str] = {}
        self.kept: list[str] = []
        """Files the last ``clear`` left in place (not raretask's, or edited since), relative."""

    # -- checks that write nothing
    def check(self, restart: bool = False) -> None:
        """Refuse a path that cannot hold this run, before anything is written."""
        p = self.path
        if p.is_symlink() and not p.exists():  # os.mkdir would say only "File exists"
            try:
                os.stat(p)
                what = "cannot be followed"
            except OSError as e:
                what = "loops" if e.errno == errno.ELOOP else "points nowhere"
            raise RunFolderError(f"{p} is a symbolic link (to {os.readlink(p)}) that {what}; fix the link or choose "
                                 "another --out")
        if p.exists() and not p.is_dir():
            raise RunFolderError(f"{p} is a file, not a run folder; choose another --out")
        if p.is_dir():
            marker = p / MARKER
            if marker.exists():
                kind = read_json(marker, "run marker").get("kind")
                if kind != self.kind:
                    raise RunFolderError(f"{p} holds a raretask {kind} run, not a {self.kind} run; choose another --out")
            elif self.legacy is not None and self.legacy(p):
                pass  # a run of this kind from before markers: adopted by open()
            elif any(e.name not in (LOCK, LOCK_INFO, FILES) for e in p.iterdir()):
                what = "--restart would delete files that raretask did not write" if restart else \
                    "raretask only writes into new, empty or raretask run folders"
                raise RunFolderError(f"{p} is not empty and not a raretask run folder ({what}); choose another --out")
        parent = p if p.is_dir() else _existing_parent(p)
        if not os.access(parent, os.W_OK | os.X_OK):
            raise RunFolderError(f"cannot write to {parent} (permission denied); choose another --out")

    def is_run(self) -> bool:
        return (self.path / MARKER).exists() or (self.legacy is not None and self.path.is_dir()
                                                 and self.legacy(self.path))

    # -- lifetime
    def open(self, restart: bool = False) -> "RunFolder":
        self.check(restart)
        self.path.mkdir(parents=True, exist_ok=True)
        self.lock()
        if restart and self.is_run():
            self.clear()
            if self.kept:
                import warnings

                from .errors import RaretaskNote

                shown = ", ".join(self.kept[:5]) + (f" and {len(self.kept) - 5} more" if len(self.kept) > 5 else "")
                warnings.warn(f"--restart kept {len(self.kept)} file(s) in {self.path} that raretask did not write "
                              f"(or that changed since): {shown}", RaretaskNote, stacklevel=2)
        if not (self.path / MARKER).exists():
            from . import __version__

            atomic_json(self.path / MARKER, {"kind": self.kind, "raretask_version": __version__,
                                             "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        return self

    def lock(self) -> None:
        from filelock import FileLock, Timeout

        lock = FileLock(str(self.path / LOCK))
        deadline = None if self.wait < 0 else time.monotonic() + self.wait
        while True:
            try:
                lock.acquire(timeout=0 if deadline is None else max(0.0, min(1.0, deadline - time.monotonic())))
                break
            except Timeout:
                if deadline is not None and time.monotonic() >= deadline:
                    raise RunFolderError(f"{self.path} is in use by {_holder(self.path)}; wait for it to finish "
                                         "or stop it") from None
                time.sleep(0.2)
        self._lock = lock
        known = _read_files(self.path)
        self._files = known if known is not None else {}
        if known is None and self.is_run():
            self._adopt()  # a run from before per-file records
        for key in {_abs(self.path), os.path.realpath(self.path)}:
            _HELD[key] = self
        if known is None:
            self._save_files()
        atomic_json(self.path / LOCK_INFO, {"pid": os.getpid(), "host": socket.gethostname(),
                                            "command": " ".join(sys.argv[:3]) or "python",
                                            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")})

    def release(self) -> None:
        if self._lock is not None:
            for key in [k for k, v in _HELD.items() if v is self]:
                del _HELD[key]
            with contextlib.suppress(OSError):
                (self.path / LOCK_INFO).unlink()
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _save_files(self) -> None:
        atomic_json(self.path / FILES, dict(sorted(self._files.items())))

    def _adopt(self) -> None:
        """Record every file under this kind's owned entries as raretask's (a folder written
        before per-file records: what its name patterns alone promised before)."""
        for pattern in self.owned:
            for e in self.path.glob(pattern):
                for q in _files_under(e):
                    if q.name not in _BOOKKEEPING:
                        self._files[q.relative_to(self.path).as_posix()] = sha256_file(q)

    def clear(self) -> list[str]:
        """Delete the files raretask wrote under this run's own entries (``owned``): those in
        the per-file record of this folder or of a run nested in it, with the checksum
        recorded. Everything else stays (``self.kept`` lists it); folders left empty go.
        Returns what was deleted (relative paths). Only for a marked folder whose lock this
        process holds."""
        if not self.is_run():
            raise RunFolderError(f"{self.path} is not a raretask run folder; nothing deleted")
        if self._lock is None:
            raise RunFolderError(f"{self.path}: clearing needs the run's lock")
        root = self.path
        gone, kept = [], []
        known = self._all_records()
        for pattern in self.owned:
            for e in sorted(root.glob(pattern)):
                if e.is_symlink() or e.is_file():
                    self._clear_file(e, known, gone, kept)
                elif e.is_dir():
                    self._clear_tree(e, known, gone, kept)
        for e in root.glob(".*.tmp"):
            e.unlink()
        self._files = {k: v for k, v in self._files.items() if (root / k).exists()}
        self._save_files()
        self.kept = kept
        return gone

    def _all_records(self) -> dict[str, str]:
        """{path relative to this folder: sha256} from this folder's per-file record and those
        of the runs nested in it, read once (the innermost record names a file; this folder's
        own wins)."""
        known: dict[str, str] = {}
        for m in sorted(self.path.rglob(MARKER), key=lambda q: -len(q.parts)):
            if m.parent != self.path:
                pre = m.parent.relative_to(self.path).as_posix() + "/"
                for k, v in (_read_files(m.parent) or {}).items():
                    known.setdefault(pre + k, v)
        known.update(self._files)
        return known

    def _clear_file(self, f: Path, known: dict[str, str], gone: list, kept: list) -> None:
        rel = f.relative_to(self.path).as_posix()
        if f.name in _BOOKKEEPING or (f.name.startswith(".") and f.name.endswith(".tmp")):
            return  # a nested run's bookkeeping (removed with its folder) or a killed write's temporary
        sha = known.get(rel)
        if sha is not None and not f.is_symlink() and sha256_file(f) == sha:
            f.unlink()
            gone.append(rel)
        else:
            kept.append(rel)

    def _clear_tree(self, d: Path, known: dict[str, str], gone: list, kept: list) -> None:
        if (d / MARKER).exists() and _read_files(d) is None:
            shutil.rmtree(d)  # a nested run from before per-file records: cleared whole, as before
            gone.append(d.relative_to(self.path).as_posix() + "/")
            return
        for e in sorted(d.iterdir()):
            if e.is_dir() and not e.is_symlink():
                self._clear_tree(e, known, gone, kept)
            elif e.name.startswith(".") and e.name.endswith(".tmp"):
                e.unlink()
            else:
                self._clear_file(e, known, gone, kept)
        rest = [e for e in d.iterdir() if e.name not in _BOOKKEEPING]
        if not rest:  # nothing of anyone's left: the folder (and a nested run's bookkeeping) goes
            shutil.rmtree(d)


def _existing_parent(p: Path) -> Path:
    p = p.absolute()
    while not p.exists():
        p = p.parent
    return p


def drop_orphan_parts(folder: Path, parts: int) -> None:
    """Delete parts numbered ``parts`` or later and half-written ``.tmp`` files: what an
    interrupted run wrote after its last checkpoint."""
    for p in folder.glob(".part-*.tmp"):  # atomic_write's temporaries
        p.unlink()
    for p in folder.glob("part-*"):
        if p.suffix == ".tmp" or int(p.name.split("-")[1].split(".")[0]) >= parts:
            p.unlink()


def read_parts(folder: Path):
    """The ``part-*.parquet`` files of ``folder`` as one DataFrame, in part order; None when none."""
    import pandas as pd

    parts = sorted(folder.glob("part-*.parquet"))
    if not parts:
        return None
    return pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
