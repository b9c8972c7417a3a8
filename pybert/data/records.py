"""TFRecord output shared by the data tools: tf.train.Example building and atomic writers.

Features are written with tf.train.Example (the seed's format, feature for
feature). Writers produce `<path>.incomplete` and rename it to `<path>` only
after the last record is flushed, so an interrupted run never leaves a
truncated TFRecord under the final name. Inside a staged_outputs() block
the renames wait until the block ends, so that a tool writing several files
replaces all of them or none. TensorFlow is imported lazily: the rest of
pybert works without it.

    with AtomicRecordWriters(["a.tfrecord", "b.tfrecord"]) as w:
        w.write(example_bytes)          # round-robin over the files, like the seed
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Sequence

import numpy as np

INCOMPLETE_SUFFIX = ".incomplete"

# (temporary name, final name) of the files written inside the current staged_outputs() block.
_STAGED: contextvars.ContextVar[list[tuple[str, str]] | None] = contextvars.ContextVar(
    "pybert_staged_outputs", default=None)


def commit_file(tmp: str, path: str) -> None:
    """Renames the complete file tmp to path: now, or when the enclosing staged_outputs()
    block ends without an exception."""
    stage = _STAGED.get()
    if stage is None:
        os.replace(tmp, path)
        return
    from pybert._outputs import same_path

    if any(same_path(p, path) for _, p in stage):
        raise ValueError(f"{path}: written twice in one run; give each output its own path")
    stage.append((tmp, path))


@contextlib.contextmanager
def staged_outputs():
    """Commits the files written inside the block as a set.

    The atomic writers of this module (and SquadFeatureArrays.save) leave their
    complete files under temporary names; when the block ends they are renamed
    into place in the order they were written (write the meta data last), and
    when it raises they are removed, so no earlier output is replaced by part
    of a new set. A final name that is a directory fails the set before the
    first rename. A nested block joins the outer one.
    """
    if _STAGED.get() is not None:
        yield
        return
    stage: list[tuple[str, str]] = []
    token = _STAGED.set(stage)
    renamed = 0
    try:
        yield
        # A final name that a file cannot replace fails the set before any rename.
        for _, path in stage:
            if os.path.isdir(path):
                raise IsADirectoryError(f"{path}: is a directory; cannot write the output there")
        for tmp, path in stage:
            os.replace(tmp, path)
            renamed += 1
    except BaseException:
        for tmp, _ in stage[renamed:]:
            with contextlib.suppress(FileNotFoundError):
                os.remove(tmp)
        raise
    finally:
        _STAGED.reset(token)


def _tf():
    try:
        import tensorflow as tf
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "writing TFRecords needs TensorFlow: pip install 'pybert[tf]'"
        ) from e
    return tf


def serialize_rows(columns: Sequence[tuple[str, np.ndarray]]) -> list[bytes]:
    """One serialized tf.train.Example per row of the given columns.

    columns: (feature name, array [N] or [N, K]); integer arrays become
    int64_list features, floating arrays float_list (float32). Encoded in C++
    (csrc/data/example_proto) with protobuf's deterministic layout: the bytes
    equal tf.train.Example.SerializeToString(deterministic=True).
    Example: [("input_ids", ids[N, 128]), ("label_ids", labels[N])] -> N byte strings.
    """
    from pybert import _C

    return _C.serialize_examples([(name, np.asarray(arr)) for name, arr in columns])


def write_feature_arrays(path: str, arrays: dict, names: Sequence[str]) -> int:
    """Writes the rows of arrays[name] for the given feature names as tf.train.Examples
    (atomically); returns the count."""
    return write_records(path, serialize_rows([(name, arrays[name]) for name in names]))


class AtomicRecordWriters:
    """TFRecord writers over one or more files, round-robin, renamed into place on success.

    On an exception inside the `with` block every partial file is removed and
    nothing appears under the final names.
    """

    def __init__(self, paths: Sequence[str], gzip_compress: bool = False):
        if not paths:
            raise ValueError("at least one output file is needed")
        from pybert._outputs import check_distinct_outputs

        self.paths = [str(p) for p in paths]
        check_distinct_outputs([("output file", p) for p in self.paths])  # "a", "./a", links
        self.options = "GZIP" if gzip_compress else ""
        self._writers = []
        self._next = 0
        self.counts = [0] * len(self.paths)

    def __enter__(self):
        tf = _tf()
        for p in self.paths:
            parent = os.path.dirname(os.path.abspath(p))
            os.makedirs(parent, exist_ok=True)
            self._writers.append(tf.io.TFRecordWriter(p + INCOMPLETE_SUFFIX, options=self.options))
        return self

    def write(self, record: bytes) -> None:
        self._writers[self._next].write(record)
        self.counts[self._next] += 1
        self._next = (self._next + 1) % len(self._writers)

    def write_all(self, records: Iterable[bytes]) -> int:
        n = 0
        for r in records:
            self.write(r)
            n += 1
        return n

    def __exit__(self, exc_type, exc, tb):
        for w in self._writers:
            w.close()
        for p in self.paths:
            if exc_type is None:
                commit_file(p + INCOMPLETE_SUFFIX, p)
            else:
                try:
                    os.remove(p + INCOMPLETE_SUFFIX)
                except FileNotFoundError:
                    pass
        return False


class ResumableRecordWriters(AtomicRecordWriters):
    """Round-robin TFRecord writers (uncompressed) that a killed run can continue.

    checkpoint() flushes every file and returns where the outputs stand (a JSON-able
    dict). ResumableRecordWriters(paths, state) continues from such a state: each
    output's files are cut back to the recorded sizes, and the new records go to a new
    segment (<path>.incomplete.1, .2, ...; TensorFlow's writer cannot append). When the
    block ends without an exception the segments are joined (TFRecord files concatenate)
    and renamed to <path>. On an exception the files are left for the next run to
    continue; discard(paths) removes them.
    """

    TAIL = 1 << 16  # each segment's last bytes are fingerprinted: a file that another
    #                 run rewrote since is not taken for this run's

    def __init__(self, paths: Sequence[str], state: dict | None = None):
        super().__init__(paths)
        n = len(self.paths)
        self.sizes: list[list[int]] = [[] for _ in range(n)]
        self.tails: list[list[str]] = [[] for _ in range(n)]
        if state is not None:
            segments = state["segments"]
            self.sizes = [[int(size) for size, _ in segs] for segs in segments]
            self.tails = [[str(tail) for _, tail in segs] for segs in segments]
            self.counts = [int(c) for c in state["counts"]]
            self._next = int(state["next"])
            if len(self.sizes) != n or len(self.counts) != n or not 0 <= self._next < n:
                raise ValueError("the progress record does not match the output files")

    def segment(self, i: int, k: int) -> str:
        return self.paths[i] + INCOMPLETE_SUFFIX + (f".{k}" if k else "")

    @classmethod
    def _tail(cls, path: str, size: int) -> str:
        """sha256 of the last TAIL bytes before `size`."""
        with open(path, "rb") as f:
            f.seek(max(size - cls.TAIL, 0))
            return hashlib.sha256(f.read(min(size, cls.TAIL))).hexdigest()

    def resumable(self) -> bool:
        """Whether every recorded segment is on disk with at least its recorded size and
        the recorded bytes before that point."""
        for i, sizes in enumerate(self.sizes):
            for k, size in enumerate(sizes):
                try:
                    if (os.path.getsize(self.segment(i, k)) < size
                            or self._tail(self.segment(i, k), size) != self.tails[i][k]):
                        return False
                except OSError:
                    return False
        return True

    def __enter__(self):
        tf = _tf()
        for i, p in enumerate(self.paths):
            os.makedirs(os.path.dirname(os.path.abspath(p)), exist_ok=True)
            for k, size in enumerate(self.sizes[i]):
                os.truncate(self.segment(i, k), size)  # records after the checkpoint: again
            k = len(self.sizes[i]) + 1
            while os.path.exists(self.segment(i, k)):  # segments of a run after the record
                os.remove(self.segment(i, k))
                k += 1
            self._writers.append(tf.io.TFRecordWriter(self.segment(i, len(self.sizes[i]))))
        return self

    def checkpoint(self) -> dict:
        for w in self._writers:
            w.flush()
        segments = []
        for i, sizes in enumerate(self.sizes):
            current = self.segment(i, len(sizes))
            size = os.path.getsize(current)
            segments.append([*zip(sizes, self.tails[i], strict=True),
                             (size, self._tail(current, size))])
        return {"segments": segments, "counts": list(self.counts), "next": self._next}

    def __exit__(self, exc_type, exc, tb):
        for w in self._writers:
            w.close()
        if exc_type is None:
            for i, p in enumerate(self.paths):
                first = self.segment(i, 0)
                with open(first, "ab") as out:
                    for k in range(1, len(self.sizes[i]) + 1):
                        with open(self.segment(i, k), "rb") as part:
                            shutil.copyfileobj(part, out, 1 << 20)
                for k in range(1, len(self.sizes[i]) + 1):
                    os.remove(self.segment(i, k))
                commit_file(first, p)
        return False

    @staticmethod
    def discard(paths: Sequence[str]) -> None:
        """Removes the partial files of these outputs (<path>.incomplete and its segments)."""
        for p in paths:
            with contextlib.suppress(FileNotFoundError):
                os.remove(str(p) + INCOMPLETE_SUFFIX)
            k = 1
            while os.path.exists(f"{p}{INCOMPLETE_SUFFIX}.{k}"):
                os.remove(f"{p}{INCOMPLETE_SUFFIX}.{k}")
                k += 1


def write_records(path: str, records: Iterable[bytes], gzip_compress: bool = False) -> int:
    """Writes records to one TFRecord file atomically; returns how many."""
    with AtomicRecordWriters([path], gzip_compress) as w:
        return w.write_all(records)


def write_json_atomic(path: str, obj) -> None:
    """json.dumps(obj, indent=4) + newline (the seed's meta data layout), renamed into place."""
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    tmp = path + INCOMPLETE_SUFFIX
    write_then_commit(tmp, path, lambda: write_text(tmp, json.dumps(obj, indent=4) + "\n"))


def write_text(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_then_commit(tmp: str, path: str, write) -> None:
    """write() creates tmp; it is committed to path, or removed when write() fails."""
    try:
        write()
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    commit_file(tmp, path)


def read_examples(path: str, compression: str | None = None) -> list[dict[str, np.ndarray]]:
    """Parses every tf.train.Example in a TFRecord into {feature: array} (tests, debugging)."""
    tf = _tf()
    out = []
    for raw in tf.data.TFRecordDataset(path, compression_type=compression or ""):
        ex = tf.train.Example.FromString(raw.numpy())
        row = {}
        for name, feat in ex.features.feature.items():
            kind = feat.WhichOneof("kind")
            if kind == "int64_list":
                row[name] = np.asarray(feat.int64_list.value, dtype=np.int64)
            elif kind == "float_list":
                row[name] = np.asarray(feat.float_list.value, dtype=np.float32)
            else:
                row[name] = list(feat.bytes_list.value)
        out.append(row)
    return out
