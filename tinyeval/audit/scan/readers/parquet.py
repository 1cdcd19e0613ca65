"""Parquet corpora: one document per row, its text in the `--text-field` column; located by row number."""

from __future__ import annotations

from collections.abc import Iterator

from tinyeval.audit.scan.readers.types import Doc, Format, ShardTask, Stats


def docs(task: ShardTask, stats: Stats) -> Iterator[Doc]:
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
                    yield Doc(row, text, rec)
                else:
                    stats.skipped["missing_text"] += 1
                row += 1
    except (OSError, ValueError) as e:  # pyarrow raises ArrowInvalid (a ValueError) on a corrupt file
        stats.skipped["unreadable_files" if row == 0 else "truncated_files"] += 1
        stats.problems.append(f"{task.source}: {type(e).__name__}: {e}")


FORMATS = (Format("parquet", docs, (".parquet",)),)
