from __future__ import annotations

import json
from pathlib import Path

import pytest

from driftrec.stream import SCENARIOS, LogFormatError, generate, read_log, write_jsonl


def test_jsonl_sorted_by_ts_with_rejects(tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    items = tmp_path / "items.jsonl"
    log.write_text(
        "\n".join(
            [
                json.dumps({"event_id": "b", "type": "click", "user_id": "u", "item_id": "i2", "ts": 20}),
                "garbage",
                json.dumps({"event_id": "a", "type": "like", "user_id": "u", "item_id": "i1", "ts": 10}),
                "",
            ]
        )
    )
    items.write_text(
        json.dumps({"item_id": "i1", "text": "one"}) + "\n" + json.dumps({"item_id": "i2", "text": "two"})
    )
    out = read_log(log, "jsonl", items)
    assert [e.event_id for e in out.events] == ["a", "b"]
    assert [r.reason for r in out.rejected] == ["bad_json"]
    assert [i.item_id for i in out.items] == ["i1", "i2"]
    assert out.consumed == 3


def test_csv(tmp_path: Path) -> None:
    p = tmp_path / "log.csv"
    p.write_text(
        "event_id,type,user_id,item_id,ts,text\n"
        "e2,comment,u1,i1,200,nice one\n"
        "e1,click,u1,i2,100,\n"
        "e3,click,u1,i2,notanumber,\n"
    )
    out = read_log(p, "csv", None)
    assert [e.event_id for e in out.events] == ["e1", "e2"]
    assert out.events[1].text == "nice one"
    assert out.rejected[0].reason == "bad_timestamp"


def test_csv_header_error_says_what_to_do(tmp_path: Path) -> None:
    p = tmp_path / "log.csv"
    p.write_text("a,b\n1,2\n")
    with pytest.raises(LogFormatError, match="header lacks"):
        read_log(p, "csv", None)


def test_movielens_format(tmp_path: Path) -> None:
    (tmp_path / "u.data").write_text("1\t10\t5\t881250949\n2\t11\t3\t881250900\n")
    genre_flags = ["0"] * 19
    genre_flags[1] = "1"  # Action
    (tmp_path / "u.item").write_text(
        "10|Heat (1995)|01-Jan-1995||http://x|" + "|".join(genre_flags) + "\n"
        "11|Babe (1995)|01-Jan-1995||http://x|" + "|".join(["0"] * 19) + "\n",
        encoding="latin-1",
    )
    out = read_log(tmp_path, "movielens")
    assert [(e.user_id, e.item_id, e.type) for e in out.events] == [("2", "11", "click"), ("1", "10", "like")]
    assert out.events[0].ts == 881250900_000
    assert out.items[0].text == "Heat (1995). Action"


def test_unknown_format_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LogFormatError, match="unknown log format"):
        read_log(tmp_path, "parquet")
    with pytest.raises(LogFormatError, match="does not exist"):
        read_log(tmp_path / "nope.jsonl", "jsonl")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_synthetic_scenarios(scenario: str, tmp_path: Path) -> None:
    s = generate(scenario, n_events=3000, n_users=60, n_items=240, seed=3)
    assert len(s.events) == 3000 and s.shifted_users
    assert all(a.ts <= b.ts for a, b in zip(s.events, s.events[1:]))
    assert all(e.text for e in s.events if e.type == "comment")
    assert s.events[0].ts < s.shift_ts < s.events[-1].ts
    # deterministic, and round-trips through JSONL
    assert generate(scenario, n_events=3000, n_users=60, n_items=240, seed=3).events == s.events
    write_jsonl(tmp_path / "e.jsonl", s.events)
    write_jsonl(tmp_path / "i.jsonl", s.items)
    back = read_log(tmp_path / "e.jsonl", "jsonl", tmp_path / "i.jsonl")
    assert back.events == s.events and len(back.items) == len(s.items)


def test_coengagement_moves_users_to_partner_items() -> None:
    s = generate("coengagement", n_events=6000, n_users=60, n_items=240, seed=1)

    # after the shift, shifted users follow a fixed partner mapping: the same
    # (previous item -> next item) transition repeats far more often than before
    def repeats(evs: list) -> float:
        last: dict[str, str] = {}
        trans: dict[tuple[str, str], int] = {}
        for e in evs:
            if e.user_id in s.shifted_users and e.user_id in last:
                k = (last[e.user_id], e.item_id)
                trans[k] = trans.get(k, 0) + 1
            last[e.user_id] = e.item_id
        return sum(v for v in trans.values() if v > 1) / max(1, sum(trans.values()))

    before = [e for e in s.events if e.ts < s.shift_ts]
    after = [e for e in s.events if e.ts >= s.shift_ts]
    assert repeats(after) > repeats(before) + 0.1


def test_fresh_items_are_untouched_before_the_shift_and_rarely_engaged_after() -> None:
    s = generate("fresh", n_events=8000, n_users=80, n_items=480, seed=2)
    before = [e for e in s.events if e.ts < s.shift_ts - 2_000]  # ts jitter is +-1 s
    after = [e for e in s.events if e.ts >= s.shift_ts + 2_000]
    old = {e.item_id for e in before}
    assert len(old) <= len(s.items) // 3 + 8  # only the back catalog before the shift
    fresh_hits = [e for e in after if e.item_id not in old]
    assert fresh_hits and all(e.user_id in s.shifted_users for e in fresh_hits)
    per_item: dict[str, int] = {}
    for e in fresh_hits:
        per_item[e.item_id] = per_item.get(e.item_id, 0) + 1
    assert len(per_item) > len(s.items) // 4  # spread over many fresh items...
    assert sorted(per_item.values())[len(per_item) // 2] <= 4  # ...each engaged only a few times
