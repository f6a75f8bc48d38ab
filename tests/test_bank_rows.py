"""The SQLite bank's row codec: repeated bare rows (replayed samples) decode to one shared
Sample, everything else to a fresh one."""

from __future__ import annotations

import math
from pathlib import Path

from iapo.bank import SQLiteBank
from iapo.bank._sqlite_rows import Codec
from iapo.types import Sample


def test_a_repeated_bare_row_decodes_to_one_sample() -> None:
    codec = Codec()
    row = codec.encode_bare(Sample("A", {"accuracy": 1.0}, 12.0, "text", {"out": 3}))
    first, again = codec.decode(*row), codec.decode(*row)
    assert first is again
    assert first == Sample("A", {"accuracy": 1.0}, 12.0, None, {"out": 3})


def test_rows_with_texts_or_other_values_decode_to_their_own_samples() -> None:
    codec = Codec()
    with_text = codec.encode(Sample("A", {}, 1.0, "because"))
    assert codec.decode(*with_text) is not codec.decode(*with_text)
    a, b = (
        codec.decode(*codec.encode_bare(Sample("A", {}, 1.0))),
        codec.decode(*codec.encode_bare(Sample("B", {}, 1.0))),
    )
    assert (a.answer, b.answer) == ("A", "B")


def test_a_zero_cost_keeps_its_sign() -> None:
    """0.0 and -0.0 are equal dictionary keys: the memo must still tell the rows apart."""
    codec = Codec()
    pos = codec.decode(*codec.encode_bare(Sample("A", {}, 0.0)))
    neg = codec.decode(*codec.encode_bare(Sample("A", {}, -0.0)))
    assert math.copysign(1.0, pos.cost) == 1.0
    assert math.copysign(1.0, neg.cost) == -1.0


def test_a_bank_read_of_replayed_rows_shares_equal_samples(tmp_path: Path) -> None:
    bank = SQLiteBank(tmp_path / "bank.sqlite")
    try:
        same = Sample("A", {"accuracy": 1.0}, 5.0)
        bank.put_many(
            [("d", "p", "q", [(0, same), (1, same), (2, Sample("B", {}, 5.0))])], texts=False
        )
        got = bank.get_many([("d", range(3))])[0]
        assert got[0] is got[1] and got[0] == same
        assert got[2].answer == "B"
    finally:
        bank.close()
