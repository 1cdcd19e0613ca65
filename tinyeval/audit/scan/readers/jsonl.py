"""JSONL corpora (.jsonl, .jsonl.gz, .jsonl.zst): one JSON object per line, its text in `--text-field`.

The scan reads blocks of lines through three paths, fastest first, each giving the same documents:
the compiled decoder (`scan.json_lines`, lines whose values are all strings), then pyarrow (`arrow`), then
`json.loads` per line where a block holds damage, which decides and counts it (malformed JSON, invalid
UTF-8, a missing or non-string text field). Uncompressed files are split into byte ranges (`splittable`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np

from tinyeval.audit.scan import json_lines, kernels
from tinyeval.audit.scan.readers import arrow, long_lines, streams
from tinyeval.audit.scan.readers.types import Batch, Doc, Format, ShardTask, Stats, Window
from tinyeval.audit.scan.readers.windows import batched


def parse_line(line: bytes, text_field: str, stats: Stats) -> tuple[str, dict] | None:
    """One JSONL line -> (text, row), or None after counting why it was skipped (and its bytes)."""
    if not line.strip():
        return None
    try:
        row = json.loads(line)
    except UnicodeDecodeError:
        stats.skip("invalid_utf8", len(line))
        return None
    except ValueError:
        stats.skip("malformed_json", len(line))
        return None
    text = row.get(text_field) if isinstance(row, dict) else None
    if not isinstance(text, str):
        stats.skip("missing_text" if isinstance(row, dict) else "malformed_json", len(line))
        return None
    return text, row


def docs(task: ShardTask, stats: Stats) -> Iterator[Doc]:
    for pos, line in streams.lines(task, stats):
        parsed = parse_line(line, task.text_field, stats)
        if parsed is not None:
            yield Doc(pos, parsed[0], parsed[1])


def batches(task: ShardTask, stats: Stats, batch_bytes: int, window: Window) -> Iterator[Batch]:
    """JSONL in blocks: the compiled path for lines of string fields, else pyarrow, else line by line
    where a block holds damage (each gives the same documents; the later ones take more shapes). A line
    longer than a block is streamed (`long_lines`) and scanned in windows."""
    for offset, block in streams.blocks(task, stats, batch_bytes):
        if isinstance(block, streams.LongLine):
            yield from batched(long_lines.docs(offset, block, task.text_field, stats, id_field=task.id_field), stats,
                               batch_bytes, False, window, task.id_field)
            continue
        plain = json_lines.decode_block(block, task.text_field)
        if plain is not None:
            data, offsets, line_starts = plain
            stats.docs += len(line_starts)
            if len(line_starts):
                yield Batch(None, (offset + line_starts).tolist(), data=data, offsets=offsets, lines=block,
                            line_base=offset)
            continue
        b = np.frombuffer(block, dtype=np.uint8)
        ends = kernels.sparse_nonzero(b == 10) + 1
        if not len(ends) or ends[-1] != len(block):
            ends = np.append(ends, len(block))
        starts = np.concatenate(([0], ends[:-1]))
        full = (ends - starts) > np.where(b[ends - 1] == 10, 1, 0)  # lines with more than a newline
        # pyarrow passes invalid UTF-8 inside strings through: such a block goes line by line, which counts it.
        column = arrow.texts(block, task.text_field) if arrow.is_utf8(block) else None
        if column is not None and len(column) == int(full.sum()):
            batch = arrow.batch(column, offset + starts[full], (ends - starts)[full], stats)
        else:
            texts, pos = [], []
            for s, e in zip(starts.tolist(), ends.tolist()):
                parsed = parse_line(block[s:e], task.text_field, stats)
                if parsed is not None:
                    texts.append(parsed[0])
                    pos.append(offset + s)
            batch = Batch(texts, pos)
        stats.docs += len(batch)
        if len(batch):
            batch.lines, batch.line_base = block, offset  # a document's id is read from its line on a hit
            yield batch


FORMATS = (
    Format("jsonl", docs, (".jsonl",), batches=batches, splittable=True),
    Format("jsonl.gz", docs, (".jsonl.gz",), batches=batches),
    Format("jsonl.zst", docs, (".jsonl.zst", ".jsonl.zstd"), batches=batches),
)
