"""The Arrow fast path for JSONL blocks the compiled decoder gives back (pyarrow's C++ parser, ~3x
`json.loads`), and batches made straight from an Arrow string column (its UTF-8 buffer, no Python strings).

pyarrow 26 does *not* reject invalid UTF-8 inside strings (it passes the bytes through), so the caller
sends a block that is not valid UTF-8 line by line instead (`is_utf8`), where the bad line is counted.
"""

from __future__ import annotations

import io

import numpy as np

from tinyeval.audit.scan.readers.types import Batch, Stats


def is_utf8(block: bytes) -> bool:
    try:
        block.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def texts(block: bytes, text_field: str):
    """The text column of a block of JSONL lines, or None when the block holds anything pyarrow cannot
    take as is (bad JSON, non-string text)."""
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


def batch(column, positions: np.ndarray, lengths: np.ndarray, stats: Stats) -> Batch:
    """A batch straight from an Arrow string column: its UTF-8 data buffer and offsets, no Python strings.
    `lengths` are the lines' byte lengths (a line without text is counted as skipped with its bytes)."""
    import pyarrow.compute as pc

    if column.null_count:
        valid = np.asarray(column.is_valid())
        stats.skipped["missing_text"] += int(len(valid) - valid.sum())
        stats.skipped_bytes += int(lengths[~valid].sum())
        column, positions = pc.filter(column, column.is_valid()), positions[valid]
    offsets = np.frombuffer(column.buffers()[1], dtype=np.int32)[column.offset:column.offset + len(column) + 1]
    data = column.buffers()[2].to_pybytes() if len(column) else b""
    return Batch(None, positions.tolist(), data=data, offsets=offsets.astype(np.int64))
