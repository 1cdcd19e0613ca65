"""Corpus readers: every format, byte-range splits, and bad input skipped and counted, never fatal."""

from __future__ import annotations

import gzip
import json

import pytest

from tinyeval.audit.scan.plan import plan_tasks
from tinyeval.audit.scan.readers.registry import read_batches
from tinyeval.audit.scan.readers.types import ShardTask, Stats
from tinyeval.errors import TinyevalError


def docs_of(task: ShardTask) -> tuple[list[tuple[int, str]], Stats]:
    stats = Stats()
    out = [(p, b.text(i)) for b in read_batches(task, stats, batch_bytes=50) for i, p in enumerate(b.positions)]
    return out, stats


def read_all(paths, **kw) -> tuple[list[str], Stats]:
    stats = Stats()
    texts = []
    for task in plan_tasks([str(p) for p in paths], **kw):
        out, s = docs_of(task)
        texts += [t for _, t in out]
        stats.add(s)
    return texts, stats


def lines(n: int) -> bytes:
    return "".join(json.dumps({"text": f"document number {i} " + "word " * (i % 7)}) + "\n" for i in range(n)).encode()


def test_bad_input_is_skipped_and_counted(tmp_path):
    good = json.dumps({"text": "fine document"}).encode() + b"\n"
    (tmp_path / "bad.jsonl").write_bytes(good + b"{not json\n" + b'{"text": "caf\xff"}\n' + b'{"other": 1}\n'
                                         + b'["a list"]\n' + b"\n" + good)
    (tmp_path / "empty.jsonl").write_bytes(b"")
    whole = gzip.compress(good * 50)
    (tmp_path / "cut.jsonl.gz").write_bytes(whole[: len(whole) // 2 + 10])
    texts, stats = read_all([tmp_path])
    assert texts.count("fine document") >= 3 and stats.docs == len(texts)
    assert stats.skipped == {"malformed_json": 2, "invalid_utf8": 1, "missing_text": 1, "empty_files": 1,
                             "truncated_files": 1}
    assert any("cut.jsonl.gz" in p for p in stats.problems)


def test_invalid_utf8_inside_well_formed_json_is_counted(tmp_path):
    """The compiled decoder gives such a block back and pyarrow would pass the bytes through: not silently."""
    good = json.dumps({"text": "fine document"}).encode() + b"\n"
    (tmp_path / "a.jsonl").write_bytes(good * 3 + b'{"text": "caf\xe9 au lait"}\n' + good)
    texts, stats = read_all([tmp_path])
    assert texts == ["fine document"] * 4
    assert stats.skipped["invalid_utf8"] == 1


def test_formats_give_the_same_documents(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    data = lines(30)
    texts = [json.loads(x)["text"] for x in data.splitlines()]
    (tmp_path / "a.jsonl").write_bytes(data)
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(data))
    (tmp_path / "a.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(data))
    pq.write_table(pa.table({"body": texts}), tmp_path / "a.parquet")
    (tmp_path / "a.txt").write_text("\n \n".join(texts) + "\n")
    for name in ("a.jsonl", "a.jsonl.gz", "a.jsonl.zst"):
        assert read_all([tmp_path / name])[0] == texts, name
    assert [t.rstrip("\n") for t in read_all([tmp_path / "a.txt"])[0]] == texts
    assert read_all([tmp_path / "a.parquet"], text_field="body")[0] == texts
    got, stats = read_all([tmp_path / "a.parquet"])  # no such column: counted, not fatal
    assert got == [] and stats.skipped["missing_text"] == 30


def test_byte_range_splits_cover_every_line_once(tmp_path):
    (tmp_path / "big.jsonl").write_bytes(lines(200))
    tasks = plan_tasks([str(tmp_path / "big.jsonl")], split_bytes=997)
    assert len(tasks) > 5
    split = [d for t in tasks for d in docs_of(t)[0]]
    whole = docs_of(ShardTask(str(tmp_path / "big.jsonl"), "jsonl"))[0]
    assert split == whole and len(whole) == 200


def test_txt_documents_are_paragraphs_located_by_byte_offset(tmp_path):
    (tmp_path / "p.txt").write_bytes("first para\nstill first\n \n\nsécond\n".encode())
    got, _ = docs_of(plan_tasks([str(tmp_path / "p.txt")])[0])
    assert got == [(0, "first para\nstill first\n"), (26, "sécond\n")]


def test_planning_errors_are_clear(tmp_path):
    with pytest.raises(TinyevalError, match="no corpus given"):
        plan_tasks([])
    with pytest.raises(TinyevalError, match="does not exist"):
        plan_tasks([str(tmp_path / "missing.jsonl")])
    with pytest.raises(TinyevalError, match="matches no files"):
        plan_tasks([str(tmp_path / "*.jsonl")])
    (tmp_path / "x.csv").write_text("a")
    with pytest.raises(TinyevalError, match="unknown format"):
        plan_tasks([str(tmp_path / "x.csv")])
    with pytest.raises(TinyevalError, match="hf://dataset"):
        plan_tasks(["hf://"])
    assert plan_tasks(["hf://allenai/c4:en:validation"])[0].fmt == "hf"


def test_hub_datasets_are_streamed_and_their_failures_counted(monkeypatch):
    import datasets

    calls = []

    def fake_load(name, config, split, streaming):
        calls.append((name, config, split, streaming))
        if name == "org/broken":
            raise ConnectionError("hub unreachable")
        return iter([{"text": "first doc"}, {"body": "no text"}, {"text": "third doc"}])

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    got, stats = docs_of(plan_tasks(["hf://org/corpus:en:validation"])[0])
    assert got == [(0, "first doc"), (2, "third doc")] and stats.skipped == {"missing_text": 1}
    assert calls == [("org/corpus", "en", "validation", True)]
    got, stats = docs_of(plan_tasks(["hf://org/broken"])[0])
    assert got == [] and stats.skipped["unreadable_files"] == 1 and "hub unreachable" in stats.problems[0]


def test_long_lines_stream_to_the_same_documents_and_counts(tmp_path):
    """A line longer than a block is parsed as it streams (`long_lines`): with 7-byte blocks every line takes
    that path, and documents, positions and every skip count must equal the whole-line paths'."""
    import random

    rng = random.Random(0)
    alphabet = ["a", "b", " ", "\n", "é", "😀", "\u2028", '"', "\\", "\t", "\x00", "\ud800", "ß", "Z"]
    out = []
    for i in range(400):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        kind = rng.randint(0, 9)
        row = ({"id": i, "meta": {"a": [1, 2.5, None, True, {"x": "y"}]}, "text": text} if kind == 0 else
               {"other": text} if kind == 1 else [text] if kind == 2 else {"text": 5} if kind == 3 else
               {"text": text, "n": rng.random()})
        line = json.dumps(row, ensure_ascii=rng.random() < 0.5).encode("utf-8", "surrogatepass")
        line = {4: line[: len(line) // 2], 5: line.replace(b"a", b"\xff", 1), 6: line + b"  ",
                7: b"  " + line.replace(b'": "', b'" :  "', 1)}.get(kind, line)
        out.append(line)
    (tmp_path / "x.jsonl").write_bytes(b"\n".join(out) + b"\n")
    task = ShardTask(str(tmp_path / "x.jsonl"), "jsonl")

    def read(batch_bytes):
        stats = Stats()
        docs = [(p, b.text(i)) for b in read_batches(task, stats, batch_bytes) for i, p in enumerate(b.positions)]
        return docs, stats

    (whole, s1), (streamed, s2) = read(1 << 20), read(7)
    assert streamed == whole and len(whole) > 150
    assert s2.skipped == s1.skipped and s2.skipped_bytes == s1.skipped_bytes and s2.docs == s1.docs
    assert set(s1.skipped) == {"invalid_utf8", "malformed_json", "missing_text"}
