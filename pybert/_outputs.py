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
import sys
from pathlib import Path


def _file_key(path):
    """The identity of the file a path names: its device and inode when it exists (hard
    links too), else the absolute path with "." and ".." and symlinks resolved."""
    try:
        st = os.stat(path)
    except OSError:
        return os.path.realpath(path)
    return (st.st_dev, st.st_ino)


def same_path(a, b) -> bool:
    """Whether two paths name one file (through "./", "..", symlinks, hard links)."""
    return _file_key(a) == _file_key(b)


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


def check_output_file(path, flag: str, inputs: dict | None = None) -> None:
    """Raises ValueError when the output file `path` (given by `flag`) is a directory or is
    one of the input files ({input flag: [paths]}): checked before any work is done."""
    if os.path.isdir(path):
        raise ValueError(f"{flag} {path}: is a directory; give a file path")
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)  # the nearest existing folder above it
    if not os.path.isdir(parent):
        raise ValueError(f"{flag} {path}: {parent} is a file, not a directory")
    for in_flag, paths in (inputs or {}).items():
        for p in paths:
            if same_path(p, path):
                raise ValueError(f"{flag} {path} is also {in_flag}: the output would replace "
                                 "its input; give another path")


def check_distinct_outputs(outputs) -> None:
    """Raises ValueError naming both flags when two of the (flag, path) outputs are one file
    (the second write would replace the first; also under two spellings or through a
    symlink); empty paths are skipped."""
    seen: dict = {}
    for flag, path in outputs:
        if not path:
            continue
        key = _file_key(path)
        if key in seen:
            other_flag, other = seen[key]
            raise ValueError(f"{other_flag} and {flag} are the same file ({other}, {path}); "
                             "give each output its own path")
        seen[key] = (flag, path)


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


class PartialResults:
    """Per-example result arrays of a prediction run, kept as they are computed so that a
    rerun of a killed run continues after them.

    `directory` (for example model_dir/test_results.partial) holds settings.json (what decides the
    results: input and checkpoint identities, flags) and part-00000.npz, part-00001.npz, ...
    with the rows computed since the previous part. A part is written under a temporary name
    and renamed when complete, every `every_s` seconds (0: after every batch) and when the
    run fails, so a killed run loses at most that much work. A rerun with the same settings
    continues after the parts that are complete; other settings start over. directory None
    keeps the rows in memory only.
    """

    def __init__(self, directory, settings: dict, every_s: float, what: str):
        import time

        self.dir = None if directory is None else Path(directory)  # None: in memory only
        self.settings, self.every_s, self.what = settings, every_s, what
        self.done: dict[str, list] = {}
        self.pending: dict[str, list] = {}
        self.rows = self.parts = 0
        self._clock = time.monotonic
        self._last = self._clock()

    def resume(self, max_rows: int | None = None) -> int:
        """Loads the complete parts of an earlier run with the same settings and returns
        their row count; otherwise (or when they hold more than max_rows rows) removes what
        is there and returns 0."""
        import numpy as np

        if self._load_settings() != self.settings:
            return self._start_over("is from other input, checkpoint or flags"
                                    if self.dir.exists() else None)
        while (part := self.dir / f"part-{self.parts:05d}.npz").exists():
            try:
                with open(part, "rb") as f, np.load(f, allow_pickle=False) as z:
                    arrays = {k: z[k] for k in z.files}
            except Exception as e:  # noqa: BLE001 - cut or corrupt zip, empty file, ...
                return self._start_over(f"has an unreadable part ({part.name}: "
                                        f"{type(e).__name__}: {e})")
            n = {len(a) for a in arrays.values()}
            if len(n) != 1 or (self.done and set(arrays) != set(self.done)):
                return self._start_over(f"has a part that does not fit ({part.name})")
            for k, a in arrays.items():
                self.done.setdefault(k, []).append(a)
            self.rows += n.pop()
            self.parts += 1
        if max_rows is not None and self.rows > max_rows:
            return self._start_over(f"holds {self.rows} rows, more than the {max_rows} of "
                                    "this run")
        return self.rows

    def _start_over(self, reason: str | None) -> int:
        if reason:
            print(f"{self.what}: {self.dir} {reason}; starting over", file=sys.stderr)
        self.done, self.rows, self.parts = {}, 0, 0
        self.discard()
        self.dir.mkdir(parents=True, exist_ok=True)
        replace_json(str(self.dir / "settings.json"), self.settings)
        return 0

    def add(self, **batch) -> None:
        """Appends one batch of rows (equal lengths); saves a part when it is time."""
        for k, a in batch.items():
            self.pending.setdefault(k, []).append(a)
        if self._clock() - self._last >= self.every_s:
            self.save()

    def save(self) -> None:
        """Writes the rows added since the last part as the next part."""
        import numpy as np

        self._last = self._clock()
        if self.dir is None or not self.pending:
            return
        arrays = {k: np.concatenate(v) for k, v in self.pending.items()}
        part = self.dir / f"part-{self.parts:05d}.npz"
        with open(str(part) + ".tmp", "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(str(part) + ".tmp", part)
        for k, a in arrays.items():
            self.done.setdefault(k, []).append(a)
        self.rows += len(next(iter(arrays.values())))
        self.parts += 1
        self.pending = {}

    def arrays(self) -> dict:
        """All rows: the earlier run's, then this run's."""
        import numpy as np

        names = set(self.done) | set(self.pending)
        return {k: np.concatenate(self.done.get(k, []) + self.pending.get(k, []))
                for k in names}

    def discard(self) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def _load_settings(self):
        try:
            return json.loads((self.dir / "settings.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
