"""Labels made from search results: pictures put into a labelled folder (one sub-folder per class) for the trainer.

Search is the fastest way to find the pictures of one kind in a collection; this turns what a search found into the
input the fine-tune wizard and `trainer fit` take. Pictures are linked by default (a symbolic link per picture: no
space used, the photo stays where it is) or copied; nothing in the labelled folder is ever overwritten (a different
picture with a name already taken gets `-2`, `-3` ...), and a picture already in the class is left as it is. Where
the system refuses links (Windows without developer mode), the picture is copied and the result says so.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from trainer.atomic import temp_path_beside

_FORBIDDEN = set('/\\:*?"<>|')


@dataclass
class Labelled:
    """What `add_to_class` did, picture by picture."""

    folder: Path  # the class folder
    added: list[Path] = field(default_factory=list)  # new entries in it
    already: list[Path] = field(default_factory=list)  # pictures that were in the class before
    copied_instead: bool = False  # links were refused here: the pictures were copied
    failed: list[tuple[Path, str]] = field(default_factory=list)


def check_class_name(name: str) -> str:
    """The class name as a folder name, or ValueError with what to change."""
    name = name.strip()
    if not name or name in (".", "..") or name.startswith("."):
        raise ValueError("a class needs a name that does not start with a dot, such as 'robin'")
    if any(c in _FORBIDDEN or ord(c) < 32 for c in name):
        raise ValueError(f"a class name cannot hold any of {' '.join(sorted(_FORBIDDEN))}; use letters, digits, - or _")
    return name


def classes(root: Path) -> dict[str, int]:
    """The classes of a labelled folder and how many pictures each holds (empty when it does not exist yet)."""
    if not root.is_dir():
        return {}
    return {
        d.name: sum(1 for f in d.iterdir() if not f.name.startswith("."))
        for d in sorted(root.iterdir())
        if d.is_dir() and not d.name.startswith(".")
    }


def _same_picture(entry: Path, picture: Path) -> bool:
    try:
        return entry.resolve() == picture.resolve() or os.path.samefile(entry, picture)
    except OSError:
        return False


def _free_name(folder: Path, picture: Path) -> Path:
    target = folder / picture.name
    n = 2
    while target.exists() or target.is_symlink():
        target = folder / f"{picture.stem}-{n}{picture.suffix}"
        n += 1
    return target


def add_to_class(root: Path, class_name: str, pictures: Sequence[Path], copy: bool = False) -> Labelled:
    """Put `pictures` into `root/class_name/` (links, or copies when `copy`); see the module docstring."""
    folder = Path(root) / check_class_name(class_name)
    folder.mkdir(parents=True, exist_ok=True)
    done = Labelled(folder)
    existing = [e for e in folder.iterdir() if not e.name.startswith(".")]
    for picture in pictures:
        picture = Path(picture).absolute()
        if any(_same_picture(e, picture) for e in existing):
            done.already.append(picture)
            continue
        target = _free_name(folder, picture)
        try:
            if copy or done.copied_instead:
                _copy(picture, target)
            else:
                try:
                    os.symlink(picture.resolve(), target)
                except OSError:  # links not allowed here: copy this one and the rest
                    done.copied_instead = True
                    _copy(picture, target)
        except OSError as exc:
            done.failed.append((picture, exc.strerror or str(exc)))
            continue
        done.added.append(target)
        existing.append(target)
    return done


def _copy(picture: Path, target: Path) -> None:
    """A whole copy or none: written beside the target and renamed (never over an existing file)."""
    tmp = temp_path_beside(target)
    try:
        shutil.copy2(picture, tmp)
        if target.exists():
            raise FileExistsError(f"{target} appeared meanwhile")
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
