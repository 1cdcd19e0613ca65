"""Shard planning: corpus arguments (files, directories, globs, hf:// datasets) -> shard tasks.

The order of tasks is stable (arguments in order, files sorted), and results are merged in that order, so
a report does not depend on the engine or the number of workers. Splittable files (uncompressed .jsonl)
larger than `split_bytes` become byte ranges aligned to lines, so one large file still feeds every worker.

Nothing a directory or glob reaches is dropped silently: symlinked folders are followed, each real folder
once (a link back to an ancestor ends there, so planning always terminates), each real file is planned once
however many paths reach it, and files no reader takes (unknown name, broken link, FIFO or device) become
tasks of the `readers.skipped` pseudo-formats, which count and name them in the report.
"""

from __future__ import annotations

import glob
import os
import stat
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path

from tinyeval.audit.scan.readers import registry, skipped
from tinyeval.audit.scan.readers.types import ShardTask
from tinyeval.errors import TinyevalError

NO_CORPUS = ("no corpus given: pass --corpus with local files, directories or globs ({suffixes}) or a hub "
             "dataset hf://dataset[:config[:split]]; repeat --corpus for several")


def _walk(root: str, depth: int | None = None) -> Iterator[str]:
    """Every non-folder path below `root`, symlinked folders followed and each real folder listed once."""
    seen: set[tuple[int, int]] = set()
    stack = [(root, 0)]
    while stack:
        folder, level = stack.pop()
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in seen:  # a link back to a folder already listed (or a loop)
            continue
        seen.add((st.st_dev, st.st_ino))
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            raise TinyevalError(f"corpus folder {folder} cannot be listed: {e.strerror}") from None
        folders = []
        for entry in entries:
            try:
                is_dir = entry.is_dir()  # follows links
            except OSError:
                is_dir = False
            if not is_dir:
                yield entry.path
            elif depth is None or level + 1 < depth:
                folders.append((entry.path, level + 1))
        stack += reversed(folders)  # listed in name order: which path reaches a shared folder is stable


def _matches(parts: tuple[str, ...], pats: tuple[str, ...]) -> bool:
    """glob's rules on path components: `**` is any number of folders; wildcards skip hidden names."""
    if not pats:
        return not parts
    if pats[0] == "**":
        return any(_matches(parts[i:], pats[1:]) for i in range(len(parts) + 1)
                   if not any(p.startswith(".") for p in parts[:i]))
    hidden_ok = pats[0].startswith(".") or not parts or not parts[0].startswith(".")
    return bool(parts) and hidden_ok and fnmatchcase(parts[0], pats[0]) and _matches(parts[1:], pats[1:])


def _glob(spec: str) -> list[str]:
    """Paths matching `spec`. Without `**` the standard glob (its depth is fixed); with it, a loop-safe walk
    from the pattern's literal folder (glob's own `**` recurses through a folder linking to its ancestor)."""
    if "**" not in spec:
        return sorted(p for p in glob.glob(spec) if not os.path.isdir(p))
    parts = Path(spec).parts
    fixed = next(i for i, p in enumerate(parts) if glob.has_magic(p))
    base = os.path.join(*parts[:fixed]) if fixed else "."
    if not os.path.isdir(base):
        return []
    pats = parts[fixed:]
    found = [p for p in _walk(base) if _matches(Path(os.path.relpath(p, base)).parts, pats)]
    return sorted(found if fixed else [os.path.relpath(p) for p in found])


def _expand(spec: str) -> list[str]:
    if os.path.isdir(spec):
        found = sorted(_walk(spec), key=lambda p: Path(p).parts)
        if not any(registry.format_of(p) for p in found):
            raise TinyevalError(f"corpus directory {spec} holds no readable files "
                                f"({', '.join(registry.suffixes())})")
        return found
    if glob.has_magic(spec):
        found = _glob(spec)
        if not found:
            raise TinyevalError(f"corpus glob '{spec}' matches no files")
        if not any(registry.format_of(p) for p in found):
            raise TinyevalError(f"corpus glob '{spec}' matches no readable files ({', '.join(registry.suffixes())})")
        return found
    if not os.path.lexists(spec):
        raise TinyevalError(f"corpus '{spec}' does not exist")
    if registry.format_of(spec) is None:
        raise TinyevalError(f"corpus file {spec}: unknown format; readable: {', '.join(registry.suffixes())}")
    return [spec]


def _file_tasks(path: str, fields: dict, split_bytes: int) -> list[ShardTask]:
    try:
        st = os.stat(path)
    except OSError:  # a broken link
        return [ShardTask(path, skipped.UNREADABLE, **fields)]
    fmt = registry.format_of(path)
    if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block the reader or never end
        return [ShardTask(path, skipped.UNREADABLE, **fields)]
    if fmt is None:
        return [ShardTask(path, skipped.UNKNOWN, **fields)]
    if registry.FORMATS[fmt].splittable and st.st_size > split_bytes:
        return [ShardTask(path, fmt, s, min(s + split_bytes, st.st_size), **fields)
                for s in range(0, st.st_size, split_bytes)]
    return [ShardTask(path, fmt, **fields)]


def plan_tasks(corpus: list[str], text_field: str = "text", split_bytes: int = 16 << 20,
               id_field: str | None = None) -> list[ShardTask]:
    """Shard tasks for every corpus argument, in a stable order (the order results are merged in); each
    reads its documents' text from `text_field` and their own id from `id_field` (None: id, url, doc_id)."""
    fields = {"text_field": text_field, "id_field": id_field}
    if not corpus:
        raise TinyevalError(NO_CORPUS.format(suffixes=", ".join(registry.suffixes())))
    tasks: list[ShardTask] = []
    planned: set[tuple[int, int]] = set()  # real files (device, inode) already planned
    for spec in corpus:
        url = registry.scheme_of(spec)
        if url is not None:
            if url.check is not None:
                url.check(spec)
            tasks.append(ShardTask(spec, url.name, **fields))
            continue
        for path in _expand(spec):
            try:
                st = os.stat(path)
            except OSError:
                st = None
            if st is not None and stat.S_ISREG(st.st_mode):
                if (st.st_dev, st.st_ino) in planned:
                    continue
                planned.add((st.st_dev, st.st_ino))
            tasks += _file_tasks(path, fields, split_bytes)
    return tasks


def sample_corpus(data_root: str | None = None) -> tuple[str, ...]:
    """The data root's sample corpora (`corpora/`: its readable files), for `tinyeval audit BENCH` without
    --corpus; without them, the error says how to name a corpus."""
    from tinyeval.data import data_root as resolve

    root = resolve(data_root)
    folder = root / "corpora" if root is not None else None
    found = sorted(p for p in _walk(str(folder)) if registry.format_of(p)) if folder and folder.is_dir() else []
    if not found:
        where = (f"the data root {root} has no sample corpora (corpora/)" if root is not None
                 else "and no data root (--data-root or TINYEVAL_DATA) with sample corpora to try it on")
        raise TinyevalError(NO_CORPUS.format(suffixes=", ".join(registry.suffixes())) + f"; {where}")
    return tuple(found)
