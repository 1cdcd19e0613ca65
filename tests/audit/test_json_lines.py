"""The compiled JSONL fast path gives pyarrow's documents, or gives the block back."""

import io

import numpy as np
import pyarrow as pa
import pyarrow.json as pj
import pytest

from tinyeval.audit.scan import json_lines


def _arrow(block: bytes) -> tuple[bytes, list[int]]:
    opts = pj.ParseOptions(explicit_schema=pa.schema([("text", pa.string())]), unexpected_field_behavior="ignore")
    col = pj.read_json(io.BytesIO(block), parse_options=opts).column("text").combine_chunks()
    offsets = np.frombuffer(col.buffers()[1], np.int32)[col.offset:col.offset + len(col) + 1]
    return col.buffers()[2].to_pybytes()[offsets[0]:offsets[-1]], (offsets - offsets[0]).tolist()


@pytest.mark.parametrize("block", [
    b'{"text": "a\\nb \\u00e9 \\ud83d\\ude00 \\"q\\" \\/ \\\\ \\t\\r\\b\\f"}\n',
    b'{"id": "x", "text":"hi"}\n\n{"text": "caf\xc3\xa9 \xe2\x80\x94 \xf0\x9f\x98\x80"}',
    b' {"text" : "a long run of plain ascii text, longer than eight bytes" } \r\n{"text": ""}\n',
    b'{"text": "\\\\\\\\\\u0041"}\n{"source": "s", "text": "0123456789abcdef\\u00e9"}\n',
])
def test_plain_lines_decode_like_pyarrow(block):
    data, offsets, starts = json_lines.decode_block(block, "text")
    assert (data, offsets.tolist()) == _arrow(block)
    lines = [i for i, line in enumerate(block.split(b"\n")) if line]
    assert starts.tolist() == [sum(len(x) + 1 for x in block.split(b"\n")[:i]) for i in lines]


@pytest.mark.parametrize("block", [
    b'{"text": 5}\n', b'{"text": null}\n', b'{"t": "a"}\n', b'{}\n', b'{"text": "a", "text": "b"}\n',
    b'{"text": "a"}\n{"text": "b"', b'{"text": "a"} x\n', b'{"text": "a",}\n', b'{"text": "a\tb"}\n',
    b'{"text": "\\ud800"}\n', b'{"text": "\\x"}\n', b'{"text": "\\u00zz"}\n', b'{"text": "\xff"}\n',
    b'{"text": "\xed\xa0\x80"}\n', b'{"text": "\xc0\xaf"}\n', b'{"te\\u0078t": "a"}\n', b'{"text": "a", "n": 1}\n',
])
def test_anything_not_plain_is_given_back(block):
    assert json_lines.decode_block(block, "text") is None
