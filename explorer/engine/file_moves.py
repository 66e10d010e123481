"""Moving a person's photos (copies found by explorer.engine.duplicates) out of the way, with an undo list.

Nothing is ever deleted: pictures are moved to a folder the person chose, under their own names (a name already
taken there gets `-2`, `-3` ...), and every move is recorded in `moves.json` in the data folder (written to a
temporary file and renamed, with a SHA-256 of its content) before the next one starts, so that `undo_last` can put
them back even after a crash or a restart. A picture whose old place is taken again when undoing stays where it is,
and the undo says so.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from explorer.paths import data_root
from trainer.atomic import atomic_write


def moves_file() -> Path:
    return data_root() / "moves.json"


@dataclass
class Moved:
    moves: list[tuple[Path, Path]] = field(default_factory=list)  # (from, to)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def _free(target: Path) -> Path:
    candidate, n = target, 2
    while candidate.exists() or candidate.is_symlink():
        candidate = target.with_name(f"{target.stem}-{n}{target.suffix}")
        n += 1
    return candidate


def _digest(records: list[dict[str, object]]) -> str:
    return hashlib.sha256(json.dumps(records, sort_keys=True).encode("utf-8", "surrogateescape")).hexdigest()


def _read(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    document = json.loads(path.read_text(encoding="utf-8", errors="surrogateescape"))
    records = document.get("records", [])
    if document.get("sha256") != _digest(records):
        raise ValueError(f"the undo list {path} is damaged (its checksum does not match); move it away to go on")
    return list(records)


def _write(path: Path, records: list[dict[str, object]]) -> None:
    text = json.dumps({"records": records, "sha256": _digest(records)}, indent=1, ensure_ascii=False)
    atomic_write(path, lambda tmp: tmp.write_bytes(text.encode("utf-8", "surrogateescape")))


def move_files(pictures: list[Path], target: Path, undo_list: Path | None = None) -> Moved:
    """Move `pictures` into `target` (made if absent), recording each move for `undo_last` as it is made."""
    undo_list = undo_list or moves_file()
    target.mkdir(parents=True, exist_ok=True)
    records = _read(undo_list)
    record: dict[str, object] = {"when": time.strftime("%Y-%m-%d %H:%M:%S"), "moves": []}
    records.append(record)
    done = Moved()
    for picture in pictures:
        destination = _free(target / picture.name)
        try:
            shutil.move(str(picture), str(destination))
        except OSError as exc:
            done.failed.append((picture, exc.strerror or str(exc)))
            continue
        done.moves.append((picture, destination))
        record["moves"] = [[str(a), str(b)] for a, b in done.moves]
        _write(undo_list, records)
    if not done.moves:
        records.pop()
        _write(undo_list, records)
    return done


def undo_last(undo_list: Path | None = None) -> Moved:
    """Put the pictures of the last recorded move back where they were (those whose place is free)."""
    undo_list = undo_list or moves_file()
    records = _read(undo_list)
    if not records:
        return Moved()
    last = records[-1].get("moves", [])
    moves = [(Path(a), Path(b)) for a, b in (last if isinstance(last, list) else [])]
    back = Moved()
    for original, moved in moves:
        if original.exists():
            back.failed.append((moved, f"{original} exists again: left where it is"))
            continue
        try:
            original.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(moved), str(original))
        except OSError as exc:
            back.failed.append((moved, exc.strerror or str(exc)))
            continue
        back.moves.append((moved, original))
    records.pop()
    _write(undo_list, records)
    return back
