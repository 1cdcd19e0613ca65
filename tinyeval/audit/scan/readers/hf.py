"""Hub datasets, streamed: `hf://dataset[:config[:split]]` (split defaults to train); located by row number.

Every failure of the hub client (offline, auth, schema) is counted as an unreadable source, not raised.
"""

from __future__ import annotations

from collections.abc import Iterator

from tinyeval.audit.scan.readers.types import Doc, Format, ShardTask, Stats
from tinyeval.errors import TinyevalError


def parse_hf(source: str) -> tuple[str, str | None, str]:
    """`hf://dataset[:config[:split]]` -> (dataset, config, split); split defaults to train."""
    parts = source.removeprefix("hf://").split(":")
    if not parts[0] or len(parts) > 3:
        raise TinyevalError(f"bad hub corpus '{source}'; expected hf://dataset[:config[:split]]")
    return parts[0], (parts[1] or None) if len(parts) > 1 else None, parts[2] if len(parts) > 2 else "train"


def docs(task: ShardTask, stats: Stats) -> Iterator[Doc]:
    name, config, split = parse_hf(task.source)
    row = 0
    try:
        import datasets

        ds = datasets.load_dataset(name, config, split=split, streaming=True)
        for rec in ds:
            text = rec.get(task.text_field)
            if isinstance(text, str):
                yield Doc(row, text, dict(rec))
            else:
                stats.skipped["missing_text"] += 1
            row += 1
    except Exception as e:  # noqa: BLE001 - the hub client raises many types (offline, auth, schema); count, don't crash
        stats.skip("unreadable_files" if row == 0 else "truncated_files", 0,  # its size is unknown
                   f"{task.source}: {type(e).__name__}: {e}")


FORMATS = (Format("hf", docs, scheme="hf://", check=parse_hf),)
