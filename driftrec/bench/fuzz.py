"""``driftrec bench fuzz``: hostile records through the scorer's real input path.

Fuzzed records (random bytes, truncated and corrupted events, JSON values of every shape,
wrong-typed fields, deep nesting, huge ids, bad UTF-8, oversized records, out-of-range
times, unknown types) are mixed with good events on the event topics of the embedded
backend (the same topics, worker and dead-letter path as on Kafka) and consumed by the
scorer. It then checks that the scorer stayed up, that counts reconcile (consumed =
processed + dead-lettered), that every record the decoder rejects is on ``events.dlq``
with its original bytes and a reason, and that nothing else is there.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
from collections import Counter
from typing import Any

from driftrec.stream import Event, encode

#: Kinds of fuzzed record, drawn uniformly.
KINDS = (
    "random_bytes",
    "truncated",
    "byte_flip",
    "json_value",
    "wrong_type",
    "deep_nesting",
    "huge_id",
    "bad_utf8",
    "oversized",
    "ts_out_of_range",
    "unknown_type",
    "comment_without_text",
)


def _json_value(rng: random.Random, depth: int = 0) -> Any:
    r = rng.random()
    if depth > 3 or r < 0.5:
        return rng.choice(
            [None, True, False, rng.randint(-(2**70), 2**70), rng.random() * 1e300, "x" * rng.randint(0, 9)]
        )
    if r < 0.75:
        return [_json_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["event_id", "type", "user_id", "item_id", "ts", "text", "k"]
    return {rng.choice(keys): _json_value(rng, depth + 1) for _ in range(rng.randint(0, 6))}


def fuzz_record(rng: random.Random, good: Event, kind: str) -> bytes:
    """One hostile record of ``kind``, made from the good event ``good`` where it helps."""
    raw = encode(good)
    d = good.to_dict()
    if kind == "random_bytes":
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200)))
    if kind == "truncated":
        return raw[: rng.randint(0, len(raw) - 1)]
    if kind == "byte_flip":
        b = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.getrandbits(8)
        return bytes(b)
    if kind == "json_value":
        return json.dumps(_json_value(rng)).encode()
    if kind == "wrong_type":
        f = rng.choice(["event_id", "type", "user_id", "item_id", "ts"])
        d[f] = _json_value(rng, 2)
        return json.dumps(d).encode()
    if kind == "deep_nesting":
        n = rng.choice([100, 1000, 50_000])
        return b'{"event_id":' + b"[" * n + b"]" * n + b"}"
    if kind == "huge_id":
        d[rng.choice(["event_id", "user_id", "item_id"])] = "u" * rng.choice([257, 10_000])
        return json.dumps(d).encode()
    if kind == "bad_utf8":
        return raw[:10] + b"\xff\xfe\xc3" + raw[10:]
    if kind == "oversized":
        d["text"] = "x" * 200_000
        return json.dumps(d).encode()
    if kind == "ts_out_of_range":
        d["ts"] = rng.choice([2**63 - 1, 10**20, -1, 1.5, "now"])
        return json.dumps(d).encode()
    if kind == "unknown_type":
        d["type"] = rng.choice(["share", "", "LIKE", "view"])
        return json.dumps(d).encode()
    if kind == "comment_without_text":
        d["type"], d["text"] = "comment", rng.choice([None, "", 5])
        return json.dumps(d).encode()
    raise ValueError(f"unknown fuzz kind {kind!r}")


def run_fuzz(records: int, good: int, seed: int = 0, model: str | None = None, progress: Any = None) -> dict:
    """Feed ``records`` fuzzed records and ``good`` good events to the embedded scorer."""
    from dataclasses import replace

    from driftrec.app.embedded import dlq_records
    from driftrec.app.settings import Settings
    from driftrec.app.system import SystemSpec, build_system
    from driftrec.state import open_state
    from driftrec.stream import TopicNames, generate
    from driftrec.stream.events import Rejected, decode

    st = Settings.from_env(model=model)
    s = generate("abrupt", n_events=max(good, 1), n_users=200, n_items=300, seed=seed)
    events = s.events[:good]
    # the scorer alone: the base encoder on the cpu, no standby, no learner, nothing cached
    spec = replace(SystemSpec.from_settings(st), lora_r=0, device="cpu", cache_dir=None)
    system = build_system(spec, s.items, learn=False, standby=False)
    names = TopicNames("fuzz")
    pipe = system.embedded(open_state("memory://"), tempfile.mkdtemp(prefix="driftrec-fuzz-"), names)
    pipe.publish_items(s.items)
    pipe.start(skip_items=True)
    rng = random.Random(seed)
    kinds: Counter[str] = Counter()
    sent: Counter[bytes] = Counter()
    expect_rejected: Counter[bytes] = Counter()
    t0 = time.perf_counter()
    per_good = records / max(1, good)
    owed, done = 0.0, 0
    for j, e in enumerate(events or [None] * 1):
        if e is not None:
            pipe.publish_events([e])
        owed += per_good if events else records
        batch = []
        while owed >= 1 and done < records:
            kind = rng.choice(KINDS)
            raw = fuzz_record(rng, events[rng.randrange(len(events))] if events else s.events[0], kind)
            kinds[kind] += 1
            sent[raw] += 1
            if isinstance(decode(raw), Rejected):
                expect_rejected[raw] += 1
            batch.append(raw)
            owed -= 1
            done += 1
        if batch:
            pipe.publish_raw(names.events[j % len(names.events)], batch, b"u-fuzz")
        if progress is not None:
            progress(done)
    ok = pipe.wait_idle(timeout=600)
    pipe.stop()
    wall = time.perf_counter() - t0
    dlq = dlq_records(pipe.broker, names)
    on_dlq = Counter(r["raw"] for r in dlq)
    summary = pipe.summary()
    missing = sum((expect_rejected - on_dlq).values())  # rejected by the decoder, not on the DLQ
    foreign = sum((on_dlq - sent).values())  # on the DLQ, but not a fuzzed record
    return {
        "bench": "fuzz",
        "fuzzed": records,
        "good": len(events),
        "kinds": dict(sorted(kinds.items())),
        "drained": ok,
        "consumed": summary["events_in"],
        "processed": summary["events_processed"],
        "dead_lettered": summary["dead_lettered"],
        "counts_reconcile": summary["counts_reconcile"],
        "decoder_rejected": sum(expect_rejected.values()),
        "on_dlq": len(dlq),
        "on_dlq_with_reason": sum(1 for r in dlq if r.get("reason")),
        "rejected_not_on_dlq": missing,
        "on_dlq_not_fuzzed": foreign,
        "reasons": dict(Counter(r.get("reason", "") for r in dlq).most_common()),
        "seconds": round(wall, 1),
        "records_per_s": round((records + len(events)) / wall, 1) if wall > 0 else None,
    }
