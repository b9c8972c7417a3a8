"""Output directories that are written under a temporary name and renamed when complete.

Replacing an existing directory deletes it first, so it is done only when every entry in it
is one that the same writer produces (an earlier output of the same kind) or the directory
is empty: pointing --output_dir at a model_dir or a directory of one's own files is an error
naming it, checked before the work starts and again before the rename.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
from pathlib import Path


def check_replaceable(output_dir, own: tuple[str, ...], what: str) -> None:
    """Raises ValueError unless output_dir is absent, empty, or holds only names matching
    the glob patterns `own` (the files `what` writes)."""
    path = Path(output_dir)
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir() or path.is_symlink():
        raise ValueError(f"{path}: exists and is not a directory (the {what} is a directory)")
    foreign = sorted(n for n in os.listdir(path)
                     if not any(fnmatch.fnmatchcase(n, p) for p in own))
    if foreign:
        shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise ValueError(
            f"{path}: exists and holds files that are not a {what} ({shown}); it would be "
            "replaced as a whole: give a new or empty directory")


def fresh_tmp_dir(output_dir, own: tuple[str, ...], what: str, create: bool = True) -> Path:
    """Checks that output_dir may be replaced, then returns <output_dir>.tmp emptied of an
    interrupted earlier attempt (created when `create`), to be passed to replace_dir."""
    check_replaceable(output_dir, own, what)
    output_dir = Path(output_dir)
    tmp = output_dir.with_name(output_dir.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    if create:
        tmp.mkdir(parents=True)
    return tmp


def replace_dir(tmp, output_dir, own: tuple[str, ...], what: str) -> None:
    """Renames the complete tmp directory to output_dir, replacing an earlier output."""
    check_replaceable(output_dir, own, what)
    output_dir = Path(output_dir)
    if output_dir.exists():
        shutil.rmtree(output_dir)
    os.replace(tmp, output_dir)


def file_identity(path) -> list:
    """[absolute path, size, mtime_ns] of a file, to tell whether it changed since a
    progress record named it ([absolute path] when it cannot be read: reported where the
    file is opened)."""
    try:
        st = os.stat(path)
    except OSError:
        return [os.path.abspath(path)]
    return [os.path.abspath(path), st.st_size, st.st_mtime_ns]


def replace_json(path: str, obj) -> None:
    """Writes obj as JSON to path + ".tmp" and renames it over path (progress records)."""
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(obj, f)
    os.replace(path + ".tmp", path)
