"""Readers for recorded event logs and catalogs: JSONL, CSV and MovieLens (u.data + u.item).

Every reader returns a :class:`Log`: events ordered by event time (stable), records that
failed validation (they go to the dead-letter path with their reason) and the catalog.

A recorded log holds no future: an event more than ``TimeBounds.max_skew_ms`` (1 h) ahead
of the wall clock when the log is read is ``ts_out_of_range`` (so a record with ts 2^63-1
cannot become the replay's "now"); old times are kept (MovieLens is from 1997-98, synthetic
logs may start at 0).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .events import MAX_TS, Event, Item, ItemId, Rejected, TimeBounds, UserId, decode, decode_item

FORMATS = ("jsonl", "csv", "movielens")


class LogFormatError(ValueError):
    """A log or catalog cannot be read at all (missing file, wrong format)."""


@dataclass
class Log:
    events: list[Event]
    items: list[Item]
    rejected: list[Rejected] = field(default_factory=list)
    source: str = ""

    @property
    def consumed(self) -> int:
        return len(self.events) + len(self.rejected)


def _sorted(events: list[Event]) -> list[Event]:
    return sorted(events, key=lambda e: e.ts)  # stable: ties keep file order


def _split(decoded: Iterable[Event | Rejected]) -> tuple[list[Event], list[Rejected]]:
    ev: list[Event] = []
    rej: list[Rejected] = []
    for d in decoded:
        (ev if isinstance(d, Event) else rej).append(d)  # type: ignore[arg-type]
    return ev, rej


def _need(path: str | os.PathLike[str], what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise LogFormatError(f"{what} {p} does not exist; check the path (--log/--items)")
    return p


def iter_jsonl(path: str | os.PathLike[str]) -> Iterator[bytes]:
    with open(_need(path, "log"), "rb") as fh:
        for line in fh:
            line = line.rstrip(b"\r\n")
            if line.strip():
                yield line


def read_items_jsonl(path: str | os.PathLike[str]) -> tuple[list[Item], list[Rejected]]:
    items: list[Item] = []
    rej: list[Rejected] = []
    for raw in iter_jsonl(_need(path, "catalog")):
        d = decode_item(raw)
        (items if isinstance(d, Item) else rej).append(d)  # type: ignore[arg-type]
    return items, rej


def read_jsonl(
    path: str | os.PathLike[str],
    items: str | os.PathLike[str] | None,
    bounds: TimeBounds | None = TimeBounds(),
) -> Log:
    """Read a JSONL event log (one event per line) and an optional JSONL catalog."""
    rng = bounds.now_window() if bounds is not None else None
    events, rejected = _split(decode(raw, rng) for raw in iter_jsonl(path))
    cat, cat_rej = read_items_jsonl(items) if items else ([], [])
    return Log(_sorted(events), cat, rejected + cat_rej, str(path))


CSV_FIELDS = ("event_id", "type", "user_id", "item_id", "ts", "text")


def read_csv(
    path: str | os.PathLike[str],
    items: str | os.PathLike[str] | None,
    bounds: TimeBounds | None = TimeBounds(),
) -> Log:
    """Read a CSV log with a header naming at least event_id,type,user_id,item_id,ts.

    ``ts`` is parsed as an integer; a row that fails goes to the rejected list with the
    same reason codes as JSON records. The catalog (``--items``) may be JSONL or CSV
    (item_id,text[,ts]).
    """
    p = _need(path, "log")
    rng = bounds.now_window() if bounds is not None else None
    with open(p, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"event_id", "type", "user_id", "item_id", "ts"} - set(reader.fieldnames or [])
        if missing:
            raise LogFormatError(f"{p}: CSV header lacks {sorted(missing)}; expected {','.join(CSV_FIELDS)}")
        decoded = []
        for row in reader:
            rec: dict[str, object] = {k: v for k, v in row.items() if k is not None and v not in (None, "")}
            ts = rec.get("ts")
            if isinstance(ts, str) and ts.strip().lstrip("-").isdigit():
                rec["ts"] = int(ts)
            decoded.append(decode(json.dumps(rec).encode(), rng))
    events, rejected = _split(decoded)
    cat: list[Item] = []
    cat_rej: list[Rejected] = []
    if items:
        ip = _need(items, "catalog")
        if ip.suffix.lower() == ".csv":
            with open(ip, newline="", encoding="utf-8") as fh:
                for row in csv.DictReader(fh):
                    rec = {k: v for k, v in row.items() if v not in (None, "")}
                    if "ts" in rec and str(rec["ts"]).isdigit():
                        rec["ts"] = int(rec["ts"])
                    d = decode_item(json.dumps(rec).encode())
                    (cat if isinstance(d, Item) else cat_rej).append(d)  # type: ignore[arg-type]
        else:
            cat, cat_rej = read_items_jsonl(ip)
    return Log(_sorted(events), cat, rejected + cat_rej, str(path))


ML_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)


def read_movielens(
    path: str | os.PathLike[str], like_threshold: int = 4, bounds: TimeBounds | None = TimeBounds()
) -> Log:
    """Read MovieLens 100K: ``path`` is the folder holding u.data and u.item (or u.data itself).

    Rating >= ``like_threshold`` becomes a like, else a click; item text = title + genres;
    timestamps are seconds and become epoch milliseconds; events are sorted by time.
    """
    p = _need(path, "MovieLens path")
    folder = p if p.is_dir() else p.parent
    data, item_file = folder / "u.data", folder / "u.item"
    for f in (data, item_file):
        if not f.exists():
            raise LogFormatError(
                f"{f} not found: --log must name the MovieLens folder holding u.data and u.item"
            )
    genres = list(ML_GENRES)
    gfile = folder / "u.genre"
    if gfile.exists():
        names = [ln.split("|")[0] for ln in gfile.read_text(encoding="latin-1").splitlines() if "|" in ln]
        if len(names) == len(ML_GENRES):
            genres = names
    items: list[Item] = []
    for line in item_file.read_text(encoding="latin-1").splitlines():
        parts = line.split("|")
        if len(parts) < 5 + len(genres):
            continue
        flags = parts[-len(genres) :]
        g = [genres[i] for i, f in enumerate(flags) if f == "1" and genres[i] != "unknown"]
        text = parts[1] + (". " + ", ".join(g) if g else "")
        items.append(Item(ItemId(parts[0]), text, 0, tuple(g)))
    events: list[Event] = []
    rejected: list[Rejected] = []
    lo, hi = bounds.now_window() if bounds is not None else (0, MAX_TS)
    with open(data, "rb") as fh:
        for n, raw in enumerate(fh):
            f = raw.split()
            try:
                user, item, rating, ts = f[0].decode(), f[1].decode(), int(f[2]), int(f[3])
            except (IndexError, ValueError, UnicodeDecodeError) as exc:
                rejected.append(Rejected(raw, "bad_json", f"u.data line {n + 1}: {exc}", "read"))
                continue
            if not lo <= ts * 1000 <= min(hi, MAX_TS):
                rejected.append(
                    Rejected(
                        raw,
                        "ts_out_of_range",
                        f"u.data line {n + 1}: ts {ts} s is outside {lo}..{hi} ms",
                        "read",
                    )
                )
                continue
            events.append(
                Event(
                    f"ml-{n}",
                    "like" if rating >= like_threshold else "click",
                    UserId(user),
                    ItemId(item),
                    ts * 1000,
                    None,
                    {"rating": rating},
                )
            )
    return Log(_sorted(events), items, rejected, str(folder))


def read_log(
    path: str | os.PathLike[str],
    fmt: str = "jsonl",
    items: str | os.PathLike[str] | None = None,
    bounds: TimeBounds | None = TimeBounds(),
) -> Log:
    """Read an event log in one of :data:`FORMATS` (``--log PATH --format F --items PATH``).

    ``bounds``: plausible event times, against the wall clock at reading (``None``: only
    the year-9999 ceiling)."""
    if fmt == "jsonl":
        return read_jsonl(path, items, bounds)
    if fmt == "csv":
        return read_csv(path, items, bounds)
    if fmt == "movielens":
        return read_movielens(path, bounds=bounds)
    raise LogFormatError(f"unknown log format {fmt!r}; use one of {', '.join(FORMATS)}")


def write_jsonl(path: str | os.PathLike[str], records: Iterable[Event | Item]) -> int:
    """Write events or items as JSONL; returns the number of lines written."""
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r.to_dict(), ensure_ascii=False) + "\n")
            n += 1
    return n
