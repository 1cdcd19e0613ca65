"""The block reader under every line-based format: open plain / .gz / .zst files, and stream whole lines
(one at a time, or in blocks of many) of a task's byte range, counting damage instead of failing.

Compressed streams are read with `read1` (one decompression step at a time), so a truncated file still
yields every line before the damage (a plain `read(n)` that fails returns nothing). A line belongs to the
byte range its first byte lies in, so byte-range splits of one file cover every line exactly once.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator

from tinyeval.audit.scan.readers.types import ShardTask, Stats


def compression(fmt: str) -> str | None:
    """"gz", "zst" or None (plain), from a format name such as "jsonl.gz"."""
    tail = fmt.rsplit(".", 1)[-1]
    return tail if tail in ("gz", "zst") else None


def open_binary(path: str, fmt: str) -> io.BufferedIOBase:
    kind = compression(fmt)
    if kind == "gz":
        return gzip.open(path, "rb")
    if kind == "zst":
        import zstandard

        raw = open(path, "rb")  # noqa: SIM115 - closed by the returned reader (closefd)
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True,
                                                                            closefd=True))
    return open(path, "rb")


_DAMAGE = (EOFError, zlib.error, gzip.BadGzipFile, OSError)


def damage_errors() -> tuple[type[BaseException], ...]:
    try:
        import zstandard

        return (*_DAMAGE, zstandard.ZstdError)
    except ImportError:
        return _DAMAGE


def open_counted(task: ShardTask, stats: Stats):
    """The task's file opened for binary reading, or None with the failure counted (the scan goes on)."""
    try:
        return open_binary(task.source, task.fmt)
    except OSError as e:
        stats.skipped["unreadable_files"] += 1
        stats.problems.append(f"{task.source}: {e}")
        return None


def lines(task: ShardTask, stats: Stats) -> Iterator[tuple[int, bytes]]:
    """(offset, line) of every line whose first byte lies in the task's range; damage ends it, counted."""
    f = open_counted(task, stats)
    if f is None:
        return
    pos = task.start
    seen = False
    with f:
        try:
            if task.start > 0:  # a line starting before `start` belongs to the previous range
                f.seek(task.start - 1)
                pos = task.start - 1 + len(f.readline())
            while task.end is None or pos < task.end:
                line = f.readline()
                if not line:
                    break
                seen = True
                yield pos, line
                pos += len(line)
        except damage_errors() as e:
            stats.skipped["truncated_files"] += 1
            stats.problems.append(f"{task.source}: damaged after byte {pos} ({type(e).__name__}: {e})")
    if not seen and task.start == 0:
        stats.skipped["empty_files"] += 1


def blocks(task: ShardTask, stats: Stats, size: int) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) blocks of whole lines whose first byte lies in the task's range; damage is counted."""
    f = open_counted(task, stats)
    if f is None:
        return
    read = f.read if compression(task.fmt) is None else f.read1
    pos, data, seen, eof = task.start, b"", False, False
    chunks: list[bytes] = []

    def cut(final: bool) -> bytes:
        nonlocal data
        end = len(data) if final else data.rfind(b"\n") + 1
        if task.end is not None and pos + end > task.end:  # stop at the first line starting past the end
            past = data.find(b"\n", task.end - pos - 1) + 1
            end = past or end
        block, data = data[:end], data[end:]
        return block

    with f:
        try:
            if task.start > 0:  # a line starting before `start` belongs to the previous range
                f.seek(task.start - 1)
                pos = task.start - 1 + len(f.readline())
            while not eof and (task.end is None or pos < task.end):
                chunks, got = [], 0
                while got < size:
                    chunk = read(size)
                    if not chunk:
                        eof = True
                        break
                    chunks.append(chunk)
                    got += len(chunk)
                data += b"".join(chunks)
                block = cut(eof)
                if block:
                    seen = True
                    yield pos, block
                    pos += len(block)
        except damage_errors() as e:
            data += b"".join(chunks)
            block = cut(False)  # the complete lines read before the damage
            if block:
                seen = True
                yield pos, block
            stats.skipped["truncated_files"] += 1
            stats.problems.append(f"{task.source}: damaged after byte {pos + len(block)} ({type(e).__name__}: {e})")
    if not seen and task.start == 0:
        stats.skipped["empty_files"] += 1
