"""Corpus scan: normalisation, hashing, index, scan evidence, engines and merge (tiny in-memory inputs)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinyeval.audit.scan import kernels, ngrams
from tinyeval.audit.scan.config import Normalisation, Recipe, Thresholds
from tinyeval.audit.scan.engines import run
from tinyeval.audit.scan.index import build_index
from tinyeval.audit.scan.plan import plan_tasks
from tinyeval.audit.scan.shard import scan_task
from tinyeval.audit.scan.verdict import merge

GSM = Normalisation(strip_annotations=True, numbers=True)
ROWS = [
    {"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                 "How many clips did Natalia sell altogether in April and May?",
     "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips "
               "altogether in April and May.\n#### 72"},
    {"question": "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting. "
                 "How much did she earn?",
     "answer": "Weng earns 12/60 = $<<12/60=0.2>>0.2 per minute.\nWorking 50 minutes, she earned 0.2 x 50 = "
               "$<<0.2*50=10>>10.\n#### 10"},
    {"question": "A farmer has 1000 apples and sells them for $5 each in the morning market today.",
     "answer": "#### 5000"},
]
FILLER = ("The lobster is a species of crustacean found in the eastern Atlantic Ocean and the Black Sea. " * 3)


def recipe(**kw) -> Recipe:
    return Recipe(name="t", dataset="t", fields=("question", "answer"), normalisation=GSM, **kw)


def write_jsonl(path, texts):
    path.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts)))
    return path


@pytest.mark.parametrize("text,words", [
    ("Natalia sold 48/2 = <<48/2=24>>24 clips", ["natalia", "sold", "48", "2", "24", "clips"]),
    ("It costs $1,000.00, not 1,000,000 or 3,4", ["it", "costs", "1000", "not", "1000000", "or", "3", "4"]),
    ("ＦＵＬＬ width ﬁne x² ÉCOLE", ["full", "width", "fine", "x2", "école"]),
    ("“Quoted”—dash…   spaced\u00a0out", ["quoted", "dash", "spaced", "out"]),
    ("e\u0301t\u00e9 5.50", ["été", "5", "50"]),
])
def test_normalisation(text, words):
    assert ngrams.words_of(text, GSM) == words


def test_normalisation_options_are_honoured():
    assert ngrams.words_of("A <<1+1=2>>2 a,b", Normalisation()) == ["a", "1", "1", "2", "2", "a", "b"]
    assert ngrams.words_of("Hello, World", Normalisation(punctuation=False, lowercase=False)) == ["Hello,", "World"]


def test_kgram_hashes_do_not_depend_on_batch_or_neighbours():
    text = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi averyveryverylongwordoverSIXTYfour" \
           + "x" * 70
    alone = ngrams.kgrams(ngrams.prefix(ngrams.word_hashes(ngrams.encode([text], GSM))), 5)
    enc = ngrams.encode(["some other doc", "Prefix words here. " + text.upper()], GSM)
    inside = ngrams.kgrams(ngrams.prefix(ngrams.word_hashes(enc)), 5)
    assert np.isin(alone, inside).all()
    assert len(np.unique(alone)) == len(alone)  # distinct windows hash differently


def test_scan_finds_injected_item_with_offsets(tmp_path):
    index = build_index(ROWS, recipe())
    item = ROWS[0]["question"] + "\n" + ROWS[0]["answer"]
    doc = FILLER + item.upper().replace("<<48/2=24>>", "") + " " + FILLER
    src = write_jsonl(tmp_path / "c.jsonl", [FILLER, doc, FILLER])
    res = scan_task(plan_tasks([str(src)])[0], index)
    assert res.stats.docs == 3
    (hit,) = [h for h in res.pairs if h.item == 0]
    assert hit.matched == index.items[0].positions and hit.span == len(index.items[0].words.split())
    assert doc[hit.start:hit.end].lower().startswith("natalia sold clips") and doc[hit.end - 2:hit.end] == "72"
    merged = merge([res], index)
    (v,) = [v for v in merged.verdicts if v.id.endswith("/0")]
    assert v.contaminated and v.fraction == 1.0 and v.similarity == 100.0


def test_ngrams_never_span_two_documents(tmp_path):
    index = build_index(ROWS, recipe())
    words = index.items[0].words.split()
    src = write_jsonl(tmp_path / "c.jsonl", [" ".join(words[:10]), " ".join(words[10:20])])
    res = scan_task(plan_tasks([str(src)])[0], index)
    assert len(res.matched) == 0


def test_items_shorter_than_n_are_indexed_whole_down_to_min_n():
    rows = [{"question": "one two three four five six seven eight nine", "answer": ""},
            {"question": "too short to index", "answer": ""}]
    index = build_index(rows, recipe())
    assert [it.k for it in index.items] == [9, 0] and index.lengths == (9,)
    enc = ngrams.encode(["x one two three four five six seven eight nine y"], GSM)
    at, _ = index.lookup(ngrams.kgrams(ngrams.prefix(ngrams.word_hashes(enc)), 9))
    assert at.tolist() == [1]


def test_partial_copy_flags_by_span_and_stray_ngram_does_not(tmp_path):
    index = build_index(ROWS, recipe(thresholds=Thresholds(min_span=20)))
    words0 = index.items[0].words.split()
    words1 = index.items[1].words.split()
    docs = [FILLER + " ".join(words0[:24]) + " " + FILLER,  # a 24-word run of item 0: partial copy
            FILLER + " ".join(words1[5:18]) + " " + FILLER]  # one stray 13-gram of item 1
    res = scan_task(plan_tasks([str(write_jsonl(tmp_path / "c.jsonl", docs))])[0], index)
    verdicts = {v.id.rsplit("/", 1)[1]: v for v in merge([res], index).verdicts}
    assert verdicts["0"].contaminated and verdicts["0"].span == 24
    assert not verdicts["1"].contaminated and verdicts["1"].span == 13


def test_local_engine_gives_same_result_with_any_worker_count(tmp_path):
    index = build_index(ROWS, recipe())
    item = ROWS[1]["question"] + " " + ROWS[1]["answer"]
    paths = [str(write_jsonl(tmp_path / f"c{i}.jsonl", [FILLER, item if i % 2 else FILLER])) for i in range(4)]
    tasks = plan_tasks(paths)
    one = merge(run("local", tasks, index, 1), index)
    two = merge(run("local", tasks, index, 2), index)
    assert one.verdicts == two.verdicts and one.stats.docs == two.stats.docs == 8
    assert len(one.verdicts[0].hits) == 2  # found in the two odd shards


def test_stripped_blocks_never_cross_a_document_boundary():
    norm = Normalisation(strip_asy=True, strip_annotations=True)
    words = ngrams.encode(["a [asy] draw; b <<1+1", "c [/asy] >> d", "[asy]x[/asy] e <<2*3=6>>6"], norm).words()
    assert words == ["a", "asy", "draw", "b", "1", "1", "c", "asy", "d", "e", "6"]


def test_compiled_rolling_hash_equals_the_prefix_sum_definition():
    enc = ngrams.encode([FILLER + " one two three " * 5], GSM)
    wh = ngrams.word_hashes(enc)
    index = build_index(ROWS, recipe())
    for k in (1, 5, 13):
        g = ngrams.kgrams(ngrams.prefix(wh), k)
        index.table[:] = ~np.uint64(0)  # every k-gram passes the bit table, so the kernel returns them all
        pos, val = kernels.kgram_candidates(wh, k, index.table, np.uint64(index.shift),
                                            np.uint64(pow(kernels.P, k - 1, 1 << 64)))
        assert pos.tolist() == list(range(len(g))) and (val == g).all()


def _split_reference(b: bytes, word: set[int], punctuation: bool, clear: set[int], cuts: set[int]):
    """The word splitter's definition, one byte at a time."""
    is_word = [c in word or c >= 0x80 for c in b]
    for i, c in enumerate(b):
        nxt = b[i + 1] if i + 1 < len(b) else 0
        n = 3 if c == 0xE2 and nxt in (0x80, 0x81) else 2 if c == 0xC2 and nxt >= 0xA0 else 0
        if punctuation:
            for j in range(i, min(i + n, len(b))):
                is_word[j] = False
    starts, ends, prev = [], [], False
    for i, w in enumerate(is_word):
        w = w and i not in clear
        if prev and (not w or i in cuts):
            ends.append(i)
        if w and (not prev or i in cuts):
            starts.append(i)
        prev = w
    return starts, ends + [len(b)] * prev


@pytest.mark.parametrize("punctuation", [True, False])
def test_compiled_word_splitter_matches_the_byte_by_byte_definition(punctuation):
    rng = np.random.default_rng(0)
    alphabet = np.frombuffer(b"ab Z09,.<\x00\xe2\x80\x81\xc2\xa0\xbf\xc3\xa9", np.uint8)
    word = {c for c in range(128) if (chr(c).isascii() and chr(c).isalnum()) or (not punctuation and 32 < c < 127)}
    for m in (0, 1, 7, 8, 63, 64, 65, 200, 1000):
        b = alphabet[rng.integers(0, len(alphabet), m)].tobytes()
        clear = np.unique(rng.integers(0, max(m, 1), m // 10))
        cuts = np.unique(rng.integers(1, max(m, 2), m // 20))
        p = np.frombuffer(b + bytes(ngrams.PAD), np.uint8)
        starts, ends = kernels.split_words(p, m, ngrams._WORD_RANGES[punctuation], punctuation, clear, cuts)
        assert (starts.tolist(), ends.tolist()) == _split_reference(b, word, punctuation, set(clear.tolist()),
                                                                    set(cuts.tolist()))
