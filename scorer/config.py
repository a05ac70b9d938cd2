"""Scorer settings (frozen, validated)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import ScorerConfigError

#: The candidate index's faiss factory strings a setting may name (an exact flat product,
#: or lists of vectors, 8-bit scalars or product-quantised codes).
INDEX_SPEC = re.compile(r"auto|Flat|IVF[1-9][0-9]{0,5},(Flat|SQ8|SQfp16|PQ[1-9][0-9]{0,3}(x4fs|x8)?)")
INDEX_SPEC_ALLOWED = "auto, Flat, or IVF<lists>,<codes> with codes Flat, SQ8, SQfp16, PQ<m>x8 or PQ<m>x4fs"
#: ``candidates`` (SCORER_CANDIDATES) and ``item_storage`` (SCORER_ITEM_STORAGE) values.
CANDIDATE_MODES = ("auto", "exact", "index")
ITEM_STORAGES = ("auto", "float32", "float16")


@dataclass(frozen=True)
class ScorerConfig:
    """``top_k``: recommendations per user; ``seen_limit``: how many seen items are kept
    per user to exclude from recommendations; ``batch_size``/``batch_ms``: micro-batching.
    ``targets``: event types counted as hits for the live hit-rate signal.
    ``comments``: how comment text becomes evidence: ``sync`` (encoded inside the batch;
    deterministic), ``async`` (encoded off the hot path, used from the user's next update
    on; what the services use) or ``off``.
    ``rank_precision``: the first pass over large score matrices: ``float32``, ``bfloat16``
    (candidates from a bfloat16 product, ranked exactly; see :mod:`scorer.ranking`) or
    ``auto`` (bfloat16 where the CPU multiplies it natively).
    ``candidates``: ``exact`` (every item scored), ``index`` (candidates from an index,
    fresh, co-engaged and popular items, ranked with the same score; see
    :mod:`scorer.candidates`) or ``auto`` (``index`` from ``exact_below`` items on).
    ``ann_k``: index candidates per user; ``ann_recall``/``ann_scan``: the index scans the
    fewest lists whose measured recall@10 reaches ``ann_recall``, at most ``ann_scan`` rows
    a query; ``index_spec``: a faiss index factory string, or ``auto`` (by catalog size);
    ``popular_k``: popular candidates; ``fresh_ms``/``fresh_max``: items published within
    that horizon (at most the newest ``fresh_max``) are candidates for every user.
    ``reencode_precision``, ``reencode_batching``: how the background re-encoding after a
    swap encodes (:meth:`driftrec.model.TextEncoder.encode`): ``float32`` or ``bfloat16``
    (the vectors within cosine 0.9999 of float32's), batches by ``tokens`` (token count,
    the least padding) or ``chars``.
    ``item_storage``: how the served item tables hold their text and context rows:
    ``float32``, ``float16`` (half the memory; scores computed from the rounded rows,
    :meth:`driftrec.model.ItemTable.stored`) or ``auto`` (float16 from ``exact_below``
    items on, float32 below: a smaller catalog is served exactly as with ``float32``;
    :meth:`storage_for`).
    ``item_max_age_ms``: items published more than this before the stream's time expire
    (never served; their rows released at the next compaction: :mod:`scorer.expiry`);
    0: never."""

    top_k: int = 10
    seen_limit: int = 500
    batch_size: int = 256
    batch_ms: int = 50
    targets: tuple[str, ...] = ("like", "comment")
    comment_cache: int = 20_000
    comments: str = "sync"
    rank_precision: str = "auto"
    candidates: str = "auto"
    exact_below: int = 50_000
    ann_k: int = 32
    ann_recall: float = 0.95
    ann_scan: int = 1024
    index_spec: str = "auto"
    popular_k: int = 256
    fresh_ms: int = 24 * 3600 * 1000
    fresh_max: int = 1024
    reencode_precision: str = "float32"
    reencode_batching: str = "tokens"
    item_storage: str = "auto"
    item_max_age_ms: int = 0

    def __post_init__(self) -> None:
        if self.top_k < 1:
            raise ScorerConfigError("SCORER_TOP_K must be >= 1")
        if self.seen_limit < 0:
            raise ScorerConfigError("SCORER_SEEN_LIMIT must be >= 0")
        if self.comments not in ("sync", "async", "off"):
            raise ScorerConfigError("SCORER_COMMENTS must be sync, async or off")
        if self.rank_precision not in ("auto", "float32", "bfloat16"):
            raise ScorerConfigError("SCORER_RANK_PRECISION must be auto, float32 or bfloat16")
        if self.candidates not in CANDIDATE_MODES:
            raise ScorerConfigError("SCORER_CANDIDATES must be auto, exact or index")
        if (
            min(self.exact_below, self.ann_k, self.ann_scan, self.popular_k, self.fresh_ms, self.fresh_max)
            < 0
        ):
            raise ScorerConfigError("the candidate settings (SCORER_EXACT_BELOW, ...) must be >= 0")
        if not INDEX_SPEC.fullmatch(self.index_spec):
            raise ScorerConfigError(f"SCORER_INDEX_SPEC: {INDEX_SPEC_ALLOWED}")
        if not 0.0 <= self.ann_recall <= 1.0:
            raise ScorerConfigError("SCORER_ANN_RECALL must be in [0, 1]")
        if self.reencode_precision not in ("float32", "bfloat16"):
            raise ScorerConfigError("the re-encoding precision must be float32 or bfloat16")
        if self.reencode_batching not in ("tokens", "chars"):
            raise ScorerConfigError("the re-encoding batching must be tokens or chars")
        if self.item_storage not in ITEM_STORAGES:
            raise ScorerConfigError("SCORER_ITEM_STORAGE must be auto, float32 or float16")
        if self.item_max_age_ms < 0:
            raise ScorerConfigError("ITEM_MAX_AGE_DAYS must be >= 0")
        if self.batch_size < 1 or self.batch_ms < 0:
            raise ScorerConfigError("SCORER_BATCH_SIZE must be >= 1 and SCORER_BATCH_MS >= 0")

    def storage_for(self, n_items: int) -> str:
        """The storage of a served table of ``n_items`` items: ``item_storage``, with
        ``auto`` resolved (float16 from ``exact_below`` items on).

        >>> ScorerConfig().storage_for(49_999), ScorerConfig().storage_for(50_000)
        ('float32', 'float16')
        >>> ScorerConfig(item_storage="float32").storage_for(10**6)
        'float32'
        """
        if self.item_storage != "auto":
            return self.item_storage
        return "float16" if n_items >= self.exact_below else "float32"
