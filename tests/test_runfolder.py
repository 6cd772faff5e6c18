"""Per-file ownership of run folders: --restart deletes exactly the files raretask wrote (the
per-file record, checksums included) and keeps every other file, in every subfolder, with a note."""

import json
import os
import shutil
import warnings

import pytest

from raretask.errors import RaretaskNote
from raretask.runfolder import FILES, MARKER, RunFolder, atomic_json, atomic_write, record, record_move


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _mine(root):
    """A user's file in every folder of the run (its root included)."""
    put = {}
    for d in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
        f = d / "USER-notes.txt"
        f.write_text(f"mine in {d.name}")
        put[f.relative_to(root).as_posix()] = f.read_bytes()
    return put


def _write_run(root, kind="k"):
    """A run: top-level files, a nested folder, a checkpoint written as a .tmp folder and
    renamed into place, a nested run of another kind with its own lock and record."""
    with RunFolder(root, kind, owned=["a.json", "figures", "checkpoints", "sub-*"]).open():
        atomic_json(root / "a.json", {"x": 1})
        (root / "figures").mkdir()
        atomic_write(root / "figures" / "f.png", b"png")
        (root / "checkpoints" / "step-1.tmp").mkdir(parents=True)
        atomic_write(root / "checkpoints" / "step-1.tmp" / "model.bin", b"weights")
        os.replace(root / "checkpoints" / "step-1.tmp", root / "checkpoints" / "step-1")
        record_move(root / "checkpoints" / "step-1.tmp", root / "checkpoints" / "step-1")
        with RunFolder(root / "sub-1", "inner", owned=["out.txt", "logs"]).open():
            atomic_write(root / "sub-1" / "out.txt", b"inner")
            (root / "sub-1" / "logs").mkdir()
            (root / "sub-1" / "logs" / "events.bin").write_bytes(b"tb")  # a third-party writer ...
            record(root / "sub-1" / "logs")  # ... recorded when done
    return root


def _restart(root, kind="k"):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        f = RunFolder(root, kind, owned=["a.json", "figures", "checkpoints", "sub-*"]).open(restart=True)
        f.release()
    return f, [str(x.message) for x in w if issubclass(x.category, RaretaskNote)]


def test_restart_keeps_a_user_file_in_every_subfolder_and_deletes_every_raretask_file(tmp_path):
    root = _write_run(tmp_path / "run")
    rec = json.loads((root / FILES).read_text())
    assert set(rec) == {"a.json", "figures/f.png", "checkpoints/step-1/model.bin"}  # moved with its folder
    assert set(json.loads((root / "sub-1" / FILES).read_text())) == {"out.txt", "logs/events.bin"}
    mine = _mine(root)
    f, notes = _restart(root)
    left = _tree(root)
    assert {k: v for k, v in left.items() if "USER" in k} == mine  # every user file, byte for byte
    theirs = {k for k in left if "USER" not in k and os.path.basename(k) not in (MARKER, FILES, ".lock", ".lock.json")}
    assert theirs == set(), theirs  # every raretask file gone
    assert sorted(f.kept) == sorted(k for k in mine if k != "USER-notes.txt")  # outside owned entries: not looked at
    assert len(notes) == 1 and f"kept {len(f.kept)} file(s)" in notes[0] and "figures/USER-notes.txt" in notes[0]


def test_an_edited_raretask_file_is_kept_and_named(tmp_path):
    root = _write_run(tmp_path / "run")
    (root / "figures" / "f.png").write_bytes(b"edited by hand")
    f, notes = _restart(root)
    assert (root / "figures" / "f.png").read_bytes() == b"edited by hand"
    assert f.kept == ["figures/f.png"] and not (root / "a.json").exists() and not (root / "checkpoints").exists()


def test_without_user_files_restart_leaves_only_the_marker_and_record(tmp_path):
    root = _write_run(tmp_path / "run")
    f, notes = _restart(root)
    assert not notes and f.kept == []
    assert sorted(p.name for p in root.iterdir()) == sorted([MARKER, FILES, ".lock"])
    assert json.loads((root / FILES).read_text()) == {}


def test_a_folder_from_before_per_file_records_is_adopted_by_its_name_patterns(tmp_path):
    """Marker but no record (an earlier version): what the owned patterns name is raretask's,
    as before; a file outside them is kept."""
    root = _write_run(tmp_path / "run")
    (root / FILES).unlink()
    shutil.rmtree(root / "sub-1")
    (root / "figures" / "old.png").write_bytes(b"from an older raretask")
    (root / "USER-notes.txt").write_text("mine")
    f, notes = _restart(root)
    assert not (root / "figures").exists() and not (root / "a.json").exists() and not notes
    assert (root / "USER-notes.txt").read_text() == "mine"


def test_the_checker_sees_a_deleted_user_file(tmp_path):
    """The comparison the first test relies on answers no when a user file goes (a check that
    cannot fail is a defect)."""
    root = _write_run(tmp_path / "run")
    mine = _mine(root)
    (root / "figures" / "USER-notes.txt").unlink()
    assert {k: v for k, v in _tree(root).items() if "USER" in k} != mine


def test_writes_outside_any_held_folder_record_nothing(tmp_path):
    atomic_write(tmp_path / "x.txt", b"x")
    record(tmp_path / "x.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.txt"]


def test_a_looping_or_dangling_symlink_as_out_is_one_line(tmp_path):
    """Before: a looping symlink as --out said only "File exists"."""
    from raretask.runfolder import RunFolderError

    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    (tmp_path / "d").symlink_to(tmp_path / "nowhere")
    with pytest.raises(RunFolderError, match=r"a is a symbolic link \(to .*b\) that loops"):
        RunFolder(tmp_path / "a", "k").check()
    with pytest.raises(RunFolderError, match="that points nowhere"):
        RunFolder(tmp_path / "d", "k").check()
    (tmp_path / "real").mkdir()
    (tmp_path / "ok").symlink_to(tmp_path / "real")
    RunFolder(tmp_path / "ok", "k").check()  # a link to a folder is a folder
