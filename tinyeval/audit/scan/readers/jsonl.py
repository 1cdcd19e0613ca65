"""Corpus readers: plan shard tasks from paths, globs and hf:// datasets, and stream documents in batches.

Bad input never stops a scan: a malformed JSON line, invalid UTF-8, a missing text field, an empty or
unreadable file and a truncated .gz/.zst are skipped and counted (`Stats`), and everything readable
before the damage is still scanned. A document is located by `(source, position)`: the byte offset of its
line (or paragraph) in the (decompressed) file, or its row number in a parquet file or hub dataset.

Formats: .jsonl (one object per line), .jsonl.gz, .jsonl.zst, .txt (and .txt.gz / .txt.zst;
documents are blank-line-separated paragraphs), .parquet, and `hf://dataset[:config[:split]]` (streamed).
Uncompressed .jsonl files larger than `split_bytes` are split into byte ranges aligned to lines, so one
large file still feeds every worker.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
import re
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tinyeval.audit.scan import json_lines, kernels, ngrams
from tinyeval.errors import TinyevalError

SKIP_KINDS = ("malformed_json", "invalid_utf8", "missing_text", "empty_files", "truncated_files",
              "unreadable_files")


@dataclass(frozen=True)
class ShardTask:
    """One unit of scan work: a whole file, a byte range of a .jsonl file, or a hub dataset."""

    source: str  # a file path or hf://...
    fmt: str  # key of READERS
    start: int = 0
    end: int | None = None  # byte range [start, end) of an uncompressed .jsonl; None = to the end
    text_field: str = "text"


@dataclass
class Stats:
    """Counters of one task: documents and bytes scanned, and everything skipped."""

    docs: int = 0
    bytes: int = 0  # UTF-8 bytes of the documents' text (counted by the scan, which encodes them anyway)
    skipped: Counter = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)  # "source: what happened" for damaged files

    def add(self, other: Stats) -> None:
        self.docs += other.docs
        self.bytes += other.bytes
        self.skipped.update(other.skipped)
        self.problems.extend(other.problems)


@dataclass
class Batch:
    """Documents of one read: Python strings, or (JSONL fast paths) one UTF-8 buffer with offsets."""

    texts: list[str] | None
    positions: list[int]
    records: list[dict | None] | None = None  # the parsed rows, only when asked for (decontamination)
    data: bytes | None = None  # documents back to back (compiled decoder or Arrow string column)
    offsets: np.ndarray | None = None  # (D + 1,) int64 document boundaries in `data`

    def __len__(self) -> int:
        return len(self.positions)

    def text(self, d: int) -> str:
        if self.texts is not None:
            return self.texts[d]
        return self.data[self.offsets[d]:self.offsets[d + 1]].decode("utf-8", "replace")

    def encode(self, norm) -> ngrams.Encoded:
        if self.texts is not None:
            return ngrams.encode(self.texts, norm)
        return ngrams.encode_utf8(self.data, self.offsets[:-1], self.offsets[1:], norm)


# ---- formats -------------------------------------------------------------------------------------------

_SUFFIXES = {  # longest suffix first when matching
    ".jsonl.gz": "jsonl.gz", ".jsonl.zst": "jsonl.zst", ".jsonl.zstd": "jsonl.zst",
    ".txt.gz": "txt.gz", ".txt.zst": "txt.zst", ".jsonl": "jsonl", ".txt": "txt",
    ".parquet": "parquet",
}


def format_of(path: str) -> str | None:
    name = path.lower()
    return next((fmt for suf, fmt in _SUFFIXES.items() if name.endswith(suf)), None)


def _open_binary(path: str, fmt: str) -> io.BufferedIOBase:
    if fmt.endswith(".gz"):
        return gzip.open(path, "rb")
    if fmt.endswith(".zst"):
        import zstandard

        raw = open(path, "rb")  # noqa: SIM115 - closed by the returned reader (closefd)
        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, read_across_frames=True,
                                                                            closefd=True))
    return open(path, "rb")


_DAMAGE = (EOFError, zlib.error, gzip.BadGzipFile, OSError)


def _damage_errors() -> tuple[type[BaseException], ...]:
    try:
        import zstandard

        return (*_DAMAGE, zstandard.ZstdError)
    except ImportError:
        return _DAMAGE


def _open_counted(task: ShardTask, stats: Stats):
    """The task's file opened for binary reading, or None with the failure counted (the scan goes on)."""
    try:
        return _open_binary(task.source, task.fmt)
    except OSError as e:
        stats.skipped["unreadable_files"] += 1
        stats.problems.append(f"{task.source}: {e}")
        return None


def _lines(task: ShardTask, stats: Stats) -> Iterator[tuple[int, bytes]]:
    """(offset, line) of every line whose first byte lies in the task's range; damage ends it, counted."""
    f = _open_counted(task, stats)
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
        except _damage_errors() as e:
            stats.skipped["truncated_files"] += 1
            stats.problems.append(f"{task.source}: damaged after byte {pos} ({type(e).__name__}: {e})")
    if not seen and task.start == 0:
        stats.skipped["empty_files"] += 1


def _batched(docs: Iterator[tuple[int, str, dict | None]], stats: Stats, batch_bytes: int,
             keep_records: bool) -> Iterator[Batch]:
    texts: list[str] = []
    positions: list[int] = []
    records: list[dict | None] = []
    size = 0
    for pos, text, record in docs:
        texts.append(text)
        positions.append(pos)
        if keep_records:
            records.append(record)
        size += len(text)
        stats.docs += 1
        if size >= batch_bytes:
            yield Batch(texts, positions, records if keep_records else None)
            texts, positions, records, size = [], [], [], 0
    if texts:
        yield Batch(texts, positions, records if keep_records else None)


def _parse_line(line: bytes, text_field: str, stats: Stats) -> tuple[str, dict] | None:
    """One JSONL line -> (text, row), or None after counting why it was skipped."""
    if not line.strip():
        return None
    try:
        row = json.loads(line)
    except UnicodeDecodeError:
        stats.skipped["invalid_utf8"] += 1
        return None
    except ValueError:
        stats.skipped["malformed_json"] += 1
        return None
    text = row.get(text_field) if isinstance(row, dict) else None
    if not isinstance(text, str):
        stats.skipped["missing_text" if isinstance(row, dict) else "malformed_json"] += 1
        return None
    return text, row


def _jsonl_docs(task: ShardTask, stats: Stats) -> Iterator[tuple[int, str, dict | None]]:
    for pos, line in _lines(task, stats):
        parsed = _parse_line(line, task.text_field, stats)
        if parsed is not None:
            yield pos, parsed[0], parsed[1]


def _blocks(task: ShardTask, stats: Stats, size: int) -> Iterator[tuple[int, bytes]]:
    """(offset, bytes) blocks of whole lines whose first byte lies in the task's range; damage is counted.

    Compressed streams are read with `read1` (one decompression step at a time), so a truncated file
    still yields every line before the damage (a plain `read(n)` that fails returns nothing).
    """
    f = _open_counted(task, stats)
    if f is None:
        return
    plain = task.fmt in ("jsonl", "txt")
    read = f.read if plain else f.read1
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
        except _damage_errors() as e:
            data += b"".join(chunks)
            block = cut(False)  # the complete lines read before the damage
            if block:
                seen = True
                yield pos, block
            stats.skipped["truncated_files"] += 1
            stats.problems.append(f"{task.source}: damaged after byte {pos + len(block)} ({type(e).__name__}: {e})")
    if not seen and task.start == 0:
        stats.skipped["empty_files"] += 1


def _is_utf8(block: bytes) -> bool:
    try:
        block.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _arrow_texts(block: bytes, text_field: str):
    """The text column of a block of JSONL lines via pyarrow's C++ parser (~3x json.loads), or None
    when the block holds anything it cannot take as is (bad JSON, non-string text)."""
    import pyarrow as pa
    import pyarrow.json as pj

    opts = pj.ParseOptions(explicit_schema=pa.schema([(text_field, pa.string())]),
                           unexpected_field_behavior="ignore")
    try:
        table = pj.read_json(io.BytesIO(block), read_options=pj.ReadOptions(use_threads=False,
                                                                            block_size=len(block) + 1),
                             parse_options=opts)
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None
    return table.column(text_field).combine_chunks()


def _arrow_batch(column, positions: np.ndarray, stats: Stats) -> Batch:
    """A batch straight from an Arrow string column: its UTF-8 data buffer and offsets, no Python strings."""
    import pyarrow.compute as pc

    if column.null_count:
        valid = np.asarray(column.is_valid())
        stats.skipped["missing_text"] += int(len(valid) - valid.sum())
        column, positions = pc.filter(column, column.is_valid()), positions[valid]
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32)[column.offset:column.offset + len(column) + 1]
    data = column.buffers()[2].to_pybytes() if len(column) else b""
    return Batch(None, positions.tolist(), data=data, offsets=offsets.astype(np.int64))


def _jsonl_batches(task: ShardTask, stats: Stats, batch_bytes: int) -> Iterator[Batch]:
    """JSONL in blocks: the compiled path for lines of string fields, else pyarrow, else line by line
    where a block holds damage (each gives the same documents; the later ones take more shapes)."""
    for offset, block in _blocks(task, stats, batch_bytes):
        plain = json_lines.decode_block(block, task.text_field)
        if plain is not None:
            data, offsets, line_starts = plain
            stats.docs += len(line_starts)
            if len(line_starts):
                yield Batch(None, (offset + line_starts).tolist(), data=data, offsets=offsets)
            continue
        b = np.frombuffer(block, dtype=np.uint8)
        ends = kernels.sparse_nonzero(b == 10) + 1
        if not len(ends) or ends[-1] != len(block):
            ends = np.append(ends, len(block))
        starts = np.concatenate(([0], ends[:-1]))
        full = (ends - starts) > np.where(b[ends - 1] == 10, 1, 0)  # lines with more than a newline
        # pyarrow passes invalid UTF-8 inside strings through: such a block goes line by line, which counts it.
        column = _arrow_texts(block, task.text_field) if _is_utf8(block) else None
        if column is not None and len(column) == int(full.sum()):
            batch = _arrow_batch(column, offset + starts[full], stats)
        else:
            texts, pos = [], []
            for s, e in zip(starts.tolist(), ends.tolist()):
                parsed = _parse_line(block[s:e], task.text_field, stats)
                if parsed is not None:
                    texts.append(parsed[0])
                    pos.append(offset + s)
            batch = Batch(texts, pos)
        stats.docs += len(batch)
        if len(batch):
            yield batch


_BLANK = re.compile(rb"[ \t\r\f\v]*\n?")


def _txt_docs(task: ShardTask, stats: Stats) -> Iterator[tuple[int, str, dict | None]]:
    """Paragraphs (runs of non-blank lines) of a text file; a paragraph with invalid UTF-8 is skipped."""
    para: list[bytes] = []
    start = 0

    def flush() -> Iterator[tuple[int, str, dict | None]]:
        try:
            yield start, b"".join(para).decode("utf-8"), None
        except UnicodeDecodeError:
            stats.skipped["invalid_utf8"] += 1

    for pos, line in _lines(task, stats):
        if _BLANK.fullmatch(line):
            if para:
                yield from flush()
                para = []
            continue
        if not para:
            start = pos
        para.append(line)
    if para:
        yield from flush()


def _parquet_docs(task: ShardTask, stats: Stats) -> Iterator[tuple[int, str, dict | None]]:
    import pyarrow.parquet as pq

    row = 0
    try:
        pf = pq.ParquetFile(task.source)
        if pf.metadata.num_rows == 0:
            stats.skipped["empty_files"] += 1
            return
        if task.text_field not in pf.schema_arrow.names:
            stats.skipped["missing_text"] += pf.metadata.num_rows
            stats.problems.append(f"{task.source}: no column '{task.text_field}'")
            return
        for batch in pf.iter_batches(batch_size=4096):
            for rec in batch.to_pylist():
                text = rec.get(task.text_field)
                if isinstance(text, str):
                    yield row, text, rec
                else:
                    stats.skipped["missing_text"] += 1
                row += 1
    except (OSError, ValueError) as e:  # pyarrow raises ArrowInvalid (a ValueError) on a corrupt file
        stats.skipped["unreadable_files" if row == 0 else "truncated_files"] += 1
        stats.problems.append(f"{task.source}: {type(e).__name__}: {e}")


def _hf_docs(task: ShardTask, stats: Stats) -> Iterator[tuple[int, str, dict | None]]:
    name, config, split = parse_hf(task.source)
    row = 0
    try:
        import datasets

        ds = datasets.load_dataset(name, config, split=split, streaming=True)
        for rec in ds:
            text = rec.get(task.text_field)
            if isinstance(text, str):
                yield row, text, dict(rec)
            else:
                stats.skipped["missing_text"] += 1
            row += 1
    except Exception as e:  # noqa: BLE001 - the hub client raises many types (offline, auth, schema); count, don't crash
        stats.skipped["unreadable_files"] += 1
        stats.problems.append(f"{task.source}: {type(e).__name__}: {e}")


READERS: dict[str, Callable[[ShardTask, Stats], Iterator[tuple[int, str, dict | None]]]] = {
    "jsonl": _jsonl_docs, "jsonl.gz": _jsonl_docs, "jsonl.zst": _jsonl_docs,
    "txt": _txt_docs, "txt.gz": _txt_docs, "txt.zst": _txt_docs,
    "parquet": _parquet_docs, "hf": _hf_docs,
}


def read_batches(task: ShardTask, stats: Stats, batch_bytes: int = 1 << 20,
                 keep_records: bool = False) -> Iterator[Batch]:
    """Documents of one task in batches of about `batch_bytes` characters."""
    if task.fmt.startswith("jsonl") and not keep_records:
        yield from _jsonl_batches(task, stats, batch_bytes)
    else:
        yield from _batched(READERS[task.fmt](task, stats), stats, batch_bytes, keep_records)


# ---- planning ------------------------------------------------------------------------------------------

def parse_hf(source: str) -> tuple[str, str | None, str]:
    """`hf://dataset[:config[:split]]` -> (dataset, config, split); split defaults to train."""
    parts = source.removeprefix("hf://").split(":")
    if not parts[0] or len(parts) > 3:
        raise TinyevalError(f"bad hub corpus '{source}'; expected hf://dataset[:config[:split]]")
    return parts[0], (parts[1] or None) if len(parts) > 1 else None, parts[2] if len(parts) > 2 else "train"


def _expand(spec: str) -> list[str]:
    if os.path.isdir(spec):
        found = [str(p) for p in sorted(Path(spec).rglob("*")) if p.is_file() and format_of(str(p))]
        if not found:
            raise TinyevalError(f"corpus directory {spec} holds no readable files ({', '.join(_SUFFIXES)})")
        return found
    if glob.has_magic(spec):
        found = sorted(p for p in glob.glob(spec, recursive=True) if os.path.isfile(p))
        if not found:
            raise TinyevalError(f"corpus glob '{spec}' matches no files")
        return found
    if not os.path.exists(spec):
        raise TinyevalError(f"corpus '{spec}' does not exist")
    return [spec]


def plan_tasks(corpus: list[str], text_field: str = "text", split_bytes: int = 16 << 20) -> list[ShardTask]:
    """Shard tasks for every corpus argument, in a stable order (the order results are merged in)."""
    if not corpus:
        raise TinyevalError("no corpus given: pass --corpus PATH|GLOB|hf://dataset[:config[:split]]")
    tasks: list[ShardTask] = []
    for spec in corpus:
        if spec.startswith("hf://"):
            parse_hf(spec)
            tasks.append(ShardTask(spec, "hf", text_field=text_field))
            continue
        for path in _expand(spec):
            fmt = format_of(path)
            if fmt is None:
                raise TinyevalError(f"corpus file {path}: unknown format; readable: {', '.join(_SUFFIXES)}")
            size = os.path.getsize(path)
            if fmt == "jsonl" and size > split_bytes:
                tasks += [ShardTask(path, fmt, s, min(s + split_bytes, size), text_field)
                          for s in range(0, size, split_bytes)]
            else:
                tasks.append(ShardTask(path, fmt, text_field=text_field))
    return tasks
