"""Parquet corpora: one document per row, its text in the `--text-field` column; located by row number."""

from __future__ import annotations

from collections.abc import Iterator

from tinyeval.audit.scan.readers import streams
from tinyeval.audit.scan.readers.types import Doc, Format, ShardTask, Stats


def docs(task: ShardTask, stats: Stats) -> Iterator[Doc]:
    """Rows with a string text; a row without one is skipped with its share of the file's bytes."""
    import pyarrow.parquet as pq

    row = missing = rows = 0
    size = streams.file_size(task.source)
    try:
        pf = pq.ParquetFile(task.source)
        rows = pf.metadata.num_rows
        if rows == 0:
            stats.skipped["empty_files"] += 1
            return
        if task.text_field not in pf.schema_arrow.names:
            stats.skipped["missing_text"] += rows
            stats.skipped_bytes += size
            stats.problems.append(f"{task.source}: no column '{task.text_field}'")
            return
        for batch in pf.iter_batches(batch_size=4096):
            for rec in batch.to_pylist():
                text = rec.get(task.text_field)
                if isinstance(text, str):
                    yield Doc(row, text, rec)
                else:
                    stats.skipped["missing_text"] += 1
                    missing += 1
                row += 1
    except (OSError, ValueError) as e:  # pyarrow raises ArrowInvalid (a ValueError) on a corrupt file
        stats.skip("unreadable_files" if row == 0 else "truncated_files", size - size * row // max(rows, 1),
                   f"{task.source}: {type(e).__name__}: {e}")
    stats.skipped_bytes += size * missing // max(row, 1)


FORMATS = (Format("parquet", docs, (".parquet",)),)
