"""The block reader under every line-based format: open plain / .gz / .zst files, and stream whole lines
(one at a time, or in blocks of many) of a task's byte range, counting damage instead of failing.

Compressed streams are read with `read1` (one decompression step at a time), so a truncated file still
yields every line before the damage (a plain `read(n)` that fails returns nothing). A line belongs to the
byte range its first byte lies in, so byte-range splits of one file cover every line exactly once.
"""

from __future__ import annotations

import gzip
import io
import os
import zlib
from collections.abc import Iterator

from tinyeval.audit.scan.readers.types import ShardTask, Stats


def compression(fmt: str) -> str | None:
    """"gz", "zst" or None (plain), from a format name such as "jsonl.gz"."""
    tail = fmt.rsplit(".", 1)[-1]
    return tail if tail in ("gz", "zst") else None


def open_binary(path: str, fmt: str) -> tuple[io.BufferedIOBase, io.BufferedIOBase]:
    """(reader, raw): the decompressed stream and the file under it (its position says how much was read)."""
    kind = compression(fmt)
    raw = open(path, "rb")  # noqa: SIM115 - closed with the reader (`_closing`)
    if kind == "gz":
        return gzip.GzipFile(fileobj=raw, mode="rb"), raw
    if kind == "zst":
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True)), raw
    return raw, raw


_DAMAGE = (EOFError, zlib.error, gzip.BadGzipFile, OSError)


def damage_errors() -> tuple[type[BaseException], ...]:
    try:
        import zstandard

        return (*_DAMAGE, zstandard.ZstdError)
    except ImportError:
        return _DAMAGE


def file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def open_counted(task: ShardTask, stats: Stats) -> tuple[io.BufferedIOBase, io.BufferedIOBase] | None:
    """The task's file opened for binary reading, or None with the failure counted (the scan goes on)."""
    try:
        return open_binary(task.source, task.fmt)
    except OSError as e:
        stats.skip("unreadable_files", file_size(task.source), f"{task.source}: {e}")
        return None


def _damaged(task: ShardTask, stats: Stats, raw, at: int, e: BaseException) -> None:
    """Count a damaged file; the compressed bytes after the damage were not read (a truncated file has none)."""
    try:
        rest = max(0, os.fstat(raw.fileno()).st_size - raw.tell())
    except (OSError, ValueError):
        rest = 0
    stats.skip("truncated_files", rest, f"{task.source}: damaged after byte {at} ({type(e).__name__}: {e})")


def _skip_partial_line(f, task: ShardTask) -> int:
    """Position `f` at the first line starting in the task's range (a line starting before `start` belongs
    to the previous range); read in bounded steps, as that line may be long. Returns the position."""
    if task.start == 0:
        return 0
    f.seek(task.start - 1)
    pos = task.start - 1
    while True:
        part = f.readline(1 << 20)
        pos += len(part)
        if not part or part.endswith(b"\n"):
            return pos


def lines(task: ShardTask, stats: Stats, limit: int = -1) -> Iterator[tuple[int, bytes]]:
    """(offset, line) of every line whose first byte lies in the task's range; damage ends it, counted.

    With a `limit`, a longer line comes in pieces of at most `limit` bytes (all but its last without "\n")."""
    opened = open_counted(task, stats)
    if opened is None:
        return
    f, raw = opened
    pos = task.start
    seen = False
    with f, raw:
        try:
            pos = _skip_partial_line(f, task)
            while task.end is None or pos < task.end:
                line = f.readline(limit)
                if not line:
                    break
                seen = True
                yield pos, line
                pos += len(line)
        except damage_errors() as e:
            _damaged(task, stats, raw, pos, e)
    if not seen and task.start == 0:
        stats.skipped["empty_files"] += 1


class LongLine:
    """A line longer than a block, streamed: iterate for its byte chunks (the last ends with its newline).

    `blocks` yields it in place of a block of whole lines and drains whatever its consumer leaves unread."""

    def __init__(self, chunks: Iterator[bytes]):
        self.chunks = chunks
        self.length = 0  # bytes handed out so far

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.length += len(chunk)
            yield chunk


def blocks(task: ShardTask, stats: Stats, size: int) -> Iterator[tuple[int, bytes | LongLine]]:
    """(offset, bytes) blocks of whole lines whose first byte lies in the task's range; damage is counted.

    A line that does not end within `size` bytes comes as a `LongLine` (streamed in chunks of `size`), so
    no line is ever held whole."""
    opened = open_counted(task, stats)
    if opened is None:
        return
    f, raw = opened
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

    def rest_of_line() -> Iterator[bytes]:  # the long line's chunks after `data`, up to its newline
        nonlocal data, eof
        head, data = data, b""
        yield head
        try:
            while True:
                chunk = read(size)
                if not chunk:
                    eof = True
                    return
                nl = chunk.find(b"\n")
                if nl >= 0:
                    data = chunk[nl + 1:]
                    yield chunk[: nl + 1]
                    return
                yield chunk
        except damage_errors() as e:
            eof = True
            _damaged(task, stats, raw, pos, e)

    with f, raw:
        try:
            pos = _skip_partial_line(f, task)
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
                elif len(data) >= size and not eof:  # no newline in a whole block: a long line, streamed
                    seen = True
                    line = LongLine(rest_of_line())
                    yield pos, line
                    for _ in line:  # what the consumer did not read
                        pass
                    pos += line.length
        except damage_errors() as e:
            data += b"".join(chunks)
            block = cut(False)  # the complete lines read before the damage
            if block:
                seen = True
                yield pos, block
            _damaged(task, stats, raw, pos + len(block), e)
    if not seen and task.start == 0:
        stats.skipped["empty_files"] += 1
