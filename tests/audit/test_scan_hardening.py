"""Bad input must never end in a "clean" verdict over what was not read, a hang, or unbounded memory (issue 22):
a corpus without text, skipped files named and counted, symlinked folders and loops, long lines, FIFOs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from typer.testing import CliRunner

from tinyeval import data
from tinyeval.audit.scan.config import Recipe
from tinyeval.audit.scan.index import build_index
from tinyeval.audit.scan.plan import plan_tasks
from tinyeval.audit.scan.shard import scan_task
from tinyeval.audit.scan.verdict import merge
from tinyeval.cli import app

runner = CliRunner()
FILLER = "Homarus gammarus is a large crustacean with a body length up to sixty centimetres. " * 3
ITEM = {"question": "the quick brown fox jumps over the lazy dog", "answer": "by the quiet river"}


def audit(corpus, out, *args: str):
    return runner.invoke(app, ["audit", "gsm8k", "--corpus", str(corpus), "--limit", "20", "--workers", "1",
                               "--out", str(out), *args])


def gsm8k_doc(i: int) -> str:
    row = data.load("gsm8k", "test").rows[i]
    return FILLER + row["question"] + "\n" + row["answer"]


@pytest.mark.parametrize("content", [
    "".join(json.dumps({"body": FILLER, "id": i}) + "\n" for i in range(50)).encode(),  # no text field
    bytes(range(256)) * 400,  # a binary file named .jsonl
])
def test_a_corpus_without_documents_fails_the_gate(content, tmp_path, data_root):
    (tmp_path / "c.jsonl").write_bytes(content)
    result = audit(tmp_path / "c.jsonl", tmp_path / "out", "--fail-above", "0")
    assert result.exit_code == 1, result.output
    assert "no documents were scanned" in result.stderr and f"skipped: {tmp_path / 'c.jsonl'}" in result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["corpus"]["documents"] == 0 and report["summary"]["incomplete"]
    assert [f["source"] for f in report["corpus"]["skipped_files"]] == [str(tmp_path / "c.jsonl")]
    assert report["corpus"]["skipped_bytes"] > 0.9 * len(content)
    assert "Verdict incomplete" in (tmp_path / "out" / "report.md").read_text()
    assert audit(tmp_path / "c.jsonl", tmp_path / "o2").exit_code == 1  # without --fail-above too


def test_skipped_bytes_above_the_threshold_fail_and_every_skipped_file_is_named(tmp_path, data_root):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    good = "".join(json.dumps({"text": FILLER}) + "\n" for _ in range(95))
    (corpus / "a.jsonl").write_text(good + "{broken\n" * 3)  # ~1% of the bytes malformed
    (corpus / "notes.tex").write_text("\\section{x} " * 40)  # no reader for .tex: skipped, counted, named
    result = audit(corpus, tmp_path / "out", "--max-skipped", "0.5")
    assert result.exit_code == 1 and "more than --max-skipped 0.5%" in result.stderr, result.output
    for name, kind in (("a.jsonl", "malformed_json 3"), ("notes.tex", "unknown_format 1")):
        assert f"skipped: {corpus / name}: {kind}" in result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    files = {f["source"]: f for f in report["corpus"]["skipped_files"]}
    assert files[str(corpus / "notes.tex")]["skipped_bytes"] == (corpus / "notes.tex").stat().st_size
    assert files[str(corpus / "a.jsonl")]["skipped"] == {"malformed_json": 3}
    clean = tmp_path / "clean"  # a threshold the user sets; decontamination rewrites the readable files only
    assert audit(corpus, tmp_path / "o2", "--max-skipped", "5", "--decontaminate", str(clean)).exit_code == 0
    assert [p.name for p in clean.iterdir()] == ["00000-a.jsonl"]


def test_symlinked_folders_are_read_and_loops_end(tmp_path, data_root):
    corpus, elsewhere = tmp_path / "corpus", tmp_path / "elsewhere"
    corpus.mkdir()
    elsewhere.mkdir()
    (corpus / "a.jsonl").write_text(json.dumps({"text": FILLER}) + "\n")
    (elsewhere / "b.jsonl").write_text(json.dumps({"text": gsm8k_doc(0)}) + "\n")
    (corpus / "linked").symlink_to(elsewhere, target_is_directory=True)  # a folder outside, linked in
    (corpus / "loop").symlink_to(corpus, target_is_directory=True)  # a folder linking to itself
    (corpus / "b-again.jsonl").symlink_to(elsewhere / "b.jsonl")  # one file reached twice: read once
    (corpus / "dangling.jsonl").symlink_to(tmp_path / "gone.jsonl")
    result = audit(corpus, tmp_path / "out")
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["corpus"]["documents"] == 2 and [v["id"] for v in report["items"] if v["contaminated"]] == \
        ["gsm8k/test/0"]
    assert report["corpus"]["skipped"]["unreadable_files"] == 1 and "dangling.jsonl: broken symbolic link" in \
        " ".join(report["corpus"]["problems"])
    assert result.exit_code == 0, result.output  # a dangling link has no bytes: under the threshold


def test_a_glob_over_a_folder_linking_to_itself_ends(tmp_path):
    """glob's own `**` follows links: two links back to the folder made it walk 2^depth paths forever."""
    corpus = tmp_path / "corpus"
    (corpus / "sub").mkdir(parents=True)
    (corpus / "sub" / "a.jsonl").write_text(json.dumps({"text": FILLER}) + "\n")
    (corpus / "top.jsonl").write_text(json.dumps({"text": FILLER}) + "\n")
    (corpus / "sub" / "up").symlink_to(corpus, target_is_directory=True)
    (corpus / "sub" / "up-too").symlink_to(corpus, target_is_directory=True)
    code = textwrap.dedent(f"""
        from tinyeval.audit.scan.plan import plan_tasks
        print(sorted(t.source for t in plan_tasks([{str(corpus / "**" / "*.jsonl")!r}])))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == str(sorted([str(corpus / "sub" / "a.jsonl"), str(corpus / "top.jsonl")]))


def test_a_fifo_in_a_corpus_folder_is_named_not_opened(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": FILLER}) + "\n")
    os.mkfifo(tmp_path / "pipe.jsonl")  # opening it would block forever
    index = build_index([ITEM], Recipe("t", "gsm8k"))
    merged = merge([scan_task(t, index) for t in plan_tasks([str(tmp_path)])], index)
    assert merged.stats.docs == 1 and merged.stats.skipped == {"unreadable_files": 1}
    assert any("pipe.jsonl: not a regular file" in p for p in merged.stats.problems)


@pytest.mark.parametrize("fmt", ["jsonl", "txt"])
def test_an_ngram_across_a_window_cut_is_found(fmt, tmp_path):
    """Long documents are scanned in windows overlapping by n - 1 words: the one 13-gram of a 13-word item,
    placed across the cut, is found, at its offset in the whole document."""
    index = build_index([ITEM], Recipe("t", "gsm8k"))
    words = (ITEM["question"] + " " + ITEM["answer"]).split()
    assert len(words) == 13 and index.items[0].positions == 1
    window = 4000
    head = "lorem ipsum dolor sit amet " * ((window - 30) // 27)  # the item starts 3 words before the cut
    text = head + " ".join(words) + " " + "consectetur adipiscing elit " * 300
    path = tmp_path / f"long.{fmt}"
    path.write_text(json.dumps({"text": text}) + "\n" if fmt == "jsonl" else text + "\n")
    (task,) = plan_tasks([str(path)])
    whole = merge([scan_task(task, index)], index).verdicts
    cut = merge([scan_task(task, index, batch_bytes=1000, window_chars=window)], index).verdicts
    assert [v.fraction for v in cut] == [v.fraction for v in whole] == [1.0]
    assert cut[0].hits[0].start == whole[0].hits[0].start == len(head) and cut[0].hits[0].span == 13


MEMORY_PROBE = """
import json, resource, sys
from tinyeval.audit.scan.config import Recipe
from tinyeval.audit.scan.index import build_index
from tinyeval.audit.scan.plan import plan_tasks
from tinyeval.audit.scan.shard import scan_task

index = build_index([json.loads(sys.argv[3])], Recipe("t", "gsm8k"))
for task in plan_tasks([sys.argv[1]]):  # ordinary lines first: the scan's steady state (4 MB batches)
    scan_task(task, index)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
results = [scan_task(task, index) for task in plan_tasks([sys.argv[2]])]
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"grew_mb": (after - before) / 1024, "docs": sum(r.stats.docs for r in results),
                  "found": sum(len(r.pairs) for r in results)}))
"""


def test_a_long_line_is_scanned_in_bounded_memory(tmp_path):
    """A 48 MB line without a newline: peak memory grows by a window's worth, not ~13x the line (once 4 GB for
    300 MB); measured in a fresh process (ru_maxrss) after a steady-state scan of ordinary lines."""
    item = ITEM["question"] + " " + ITEM["answer"]
    filler = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor " * 100
    with open(tmp_path / "ordinary.jsonl", "w") as f:
        for i in range(1200):
            f.write(json.dumps({"text": filler + str(i)}) + "\n")
    with open(tmp_path / "long.jsonl", "w") as f:
        f.write('{"id": 1, "text": "')
        count = (48 << 20) // len(filler)
        for i in range(count):
            f.write(filler + (item + " " if i == count // 2 else ""))
        f.write('"}\n')
    proc = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(tmp_path / "ordinary.jsonl"),
                           str(tmp_path / "long.jsonl"), json.dumps(ITEM)],
                          capture_output=True, text=True, timeout=300, check=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    got = json.loads(proc.stdout)
    assert got["docs"] == 1 and got["found"] == 1
    assert got["grew_mb"] < 200, got  # measured ~110 MB for 40 and 100 MB lines alike (was ~480 MB for 40)


def test_an_unreadable_hub_dataset_makes_the_verdict_incomplete(tmp_path, monkeypatch, data_root):
    """Its size is unknown, so no byte threshold can excuse it: the local file alone is not the corpus asked for."""
    import datasets

    def unreachable(*args, **kwargs):
        raise ConnectionError("hub unreachable")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    (tmp_path / "a.jsonl").write_text(json.dumps({"text": FILLER}) + "\n")
    result = runner.invoke(app, ["audit", "gsm8k", "--corpus", str(tmp_path / "a.jsonl"), "--corpus", "hf://org/c4",
                                 "--limit", "20", "--workers", "1", "--out", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 1 and "could not read hf://org/c4 (size unknown)" in result.stderr, result.output
    assert json.loads(result.stdout)[0]["incomplete"] == ["could not read hf://org/c4 (size unknown)"]
