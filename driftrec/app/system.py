"""The composition root: settings and a catalog in, the whole system out.

:func:`build_system` loads the encoders (the serving one, its standby for background
re-encoding, the trainer on its device and seed), encodes the base item table (cached on
disk), and builds the scorer with its swap manager and the learner. :class:`System` then
wraps them in a pipeline around a transport and a state store: the embedded runner
(:meth:`System.embedded`) or the services' workers (:meth:`System.scorer_worker`,
:meth:`System.learner_worker`). Every entry point (demo, services, eval harness, benchmarks,
fault bed) builds its parts here and nowhere else; what differs between them (no learner,
no scorer, systems sharing one base table, the popularity kept in the state) is an argument.

The scorer is made in :func:`build_scorer` alone (it takes the :class:`ScorerConfig`), the
state store in :func:`open_store`: the seams for a candidate index and other state backends.

>>> import tempfile
>>> from driftrec.model import make_tiny_model
>>> from driftrec.stream import Item
>>> path = make_tiny_model(tempfile.mkdtemp(), ["goal", "pasta"])
>>> spec = SystemSpec(model=path, lora_r=2, device="cpu")
>>> s = build_system(spec, [Item("a", "goal", 0), Item("b", "pasta", 0)], learn=False)
>>> s.scorer.version, s.learner is None, s.table.item_ids
('base', True, ['a', 'b'])
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from driftrec.learner import Learner, LearnerConfig
from driftrec.model import ItemTable, Representation, TextEncoder
from driftrec.scorer import Scorer, ScorerConfig, ServingModel, SwapManager
from driftrec.stream import Item

from .embedded import EmbeddedPipeline
from .runtime import LearnerWorker, ScorerWorker, TopicNames

if TYPE_CHECKING:
    from driftrec.state import StateStore

log = logging.getLogger("driftrec")

BASE_VERSION = "base"


@dataclass(frozen=True)
class SystemSpec:
    """What a system is built from: the encoder, where it runs, the cores' configurations.

    ``device`` is where the serving encoders run, ``train_device`` where the trainer runs
    (None: ``device``); the trainer's adapters start from ``learner.seed``. ``cache_dir``
    keeps the base vectors on disk (None: encode every time)."""

    model: str | None = None
    lora_r: int = 8
    max_len: int = 32
    device: str = "auto"
    train_device: str | None = None
    cache_dir: str | None = None
    rep: Representation = field(default_factory=Representation)
    scorer: ScorerConfig = field(default_factory=ScorerConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)

    @classmethod
    def from_settings(cls, settings: Any) -> SystemSpec:
        """The spec of :class:`driftrec.app.settings.Settings` (both encoders on ``DEVICE``)."""
        return cls(
            model=settings.model,
            lora_r=settings.lora_r,
            max_len=settings.max_len,
            device=settings.device,
            train_device=settings.device,
            cache_dir=settings.cache_dir,
            rep=settings.rep,
            scorer=settings.scorer,
            learner=settings.learner,
        )


@dataclass
class System:
    """The built parts. ``encoder`` encoded the base table: the serving encoder, or the
    trainer in a system that does not serve. Parts a system was built without are None."""

    spec: SystemSpec
    texts: dict[str, str]
    item_ts: dict[str, int] | None
    table: ItemTable
    encoder: TextEncoder
    standby: TextEncoder | None = None
    trainer: TextEncoder | None = None
    scorer: Scorer | None = None
    swaps: SwapManager | None = None
    learner: Learner | None = None

    @property
    def base_model(self) -> str:
        """The encoder's name, as artifacts and the serving manifest carry it."""
        return self.encoder.base_model

    def embedded(
        self,
        state: StateStore,
        artifact_dir: str,
        names: TopicNames = TopicNames(),
        *,
        batch_size: int | None = None,
        batch_ms: int | None = None,
        **kw: Any,
    ) -> EmbeddedPipeline:
        """Scorer and learner (if any) in one process over the in-process transport;
        batches as the scorer's config says unless given."""
        if self.scorer is None or self.swaps is None:
            raise ValueError("the embedded runner needs a system built with serve=True")
        return EmbeddedPipeline(
            self.scorer,
            self.swaps,
            self.learner,
            state,
            artifact_dir,
            self.base_model,
            names,
            batch_size=self.spec.scorer.batch_size if batch_size is None else batch_size,
            batch_ms=self.spec.scorer.batch_ms if batch_ms is None else batch_ms,
            **kw,
        )

    def scorer_worker(
        self, state: StateStore, sink: Any, names: TopicNames, group: str, **kw: Any
    ) -> ScorerWorker:
        """The scorer service's worker around ``sink`` (recs.updates, events.dlq) and ``state``."""
        if self.scorer is None:
            raise ValueError("a scorer worker needs a system built with serve=True")
        return build_scorer_worker(self.scorer, state, sink, names, group, swaps=self.swaps, **kw)

    def learner_worker(
        self, sink: Any, state: StateStore, names: TopicNames, artifact_dir: str, **kw: Any
    ) -> LearnerWorker:
        """The learner service's worker: artifacts under ``artifact_dir``, the registry in ``state``."""
        if self.learner is None:
            raise ValueError("a learner worker needs a system built with learn=True")
        return LearnerWorker(self.learner, sink, artifact_dir, state, self.base_model, names, **kw)


def build_system(
    spec: SystemSpec,
    items: Sequence[Item],
    *,
    serve: bool = True,
    learn: bool = True,
    standby: bool = True,
    trainer: Literal["own", "serving"] | None = "own",
    background: bool = True,
    encoder: TextEncoder | None = None,
    table: ItemTable | None = None,
    item_pop: Mapping[str, float] | None = None,
    store: str | None = None,
    key: bytes | str | None = None,
    progress: Callable[[int], None] | None = None,
) -> System:
    """The system over the catalog ``items``.

    serve : build the scorer and its swap manager (False: the learner service)
    learn : build the learner (False: the scorer alone)
    standby : a second serving encoder that the next version loads into
    trainer : ``"own"``: the learner trains an encoder of its own (on ``train_device``,
        seeded by ``learner.seed``); ``"serving"``: one encoder, loaded as the trainer's,
        serves and trains (training is synchronous between batches); None: a learner
        without an encoder (the item parts only)
    background : the swap manager prepares versions in a thread of its own
    encoder, table : parts already built (systems sharing one base table); the table is
        otherwise encoded by the first encoder (an empty catalog gives an empty table)
    item_pop : the popularity kept in the state (the scorer service)
    store, key : the swap manager's artifact store (``ARTIFACT_DIR``) and ``ARTIFACT_KEY``
    progress : called with the number of items encoded, as the base table is encoded
    """
    if trainer == "serving" and not serve:
        raise ValueError("trainer='serving' trains the serving encoder: it needs serve=True")
    s = spec
    texts: dict[str, str] = {it.item_id: it.text for it in items}
    pub = publication_times(items)  # an item is a candidate from its ts on
    shared = learn and trainer == "serving"
    # The encoders in the order every entry point has loaded them: serving, standby, trainer.
    enc = encoder
    if enc is None and serve:
        enc = (
            load_encoder(s.model, s.lora_r, s.max_len, _train_device(s), seed=s.learner.seed)
            if shared
            else load_encoder(s.model, s.lora_r, s.max_len, s.device)
        )
    spare = load_encoder(s.model, s.lora_r, s.max_len, s.device) if serve and standby else None
    trainer_enc: TextEncoder | None = None
    if learn and trainer == "own":
        trainer_enc = load_encoder(s.model, s.lora_r, s.max_len, _train_device(s), seed=s.learner.seed)
    elif shared:
        trainer_enc = enc
    if enc is None:  # a system that does not serve: the table under the trainer (or a plain encoder)
        enc = trainer_enc or load_encoder(s.model, s.lora_r, s.max_len, s.device)
    if table is None:
        table = (
            base_table(enc, items, s.cache_dir, progress=progress)
            if items
            else ItemTable.from_text([], np.zeros((0, enc.dim), np.float32))
        )
    out = System(s, texts, pub, table, enc, spare, trainer_enc)
    if serve:
        out.scorer = build_scorer(s.scorer, table, s.rep, enc, item_pop=item_pop, item_ts=pub)
        out.swaps = build_swaps(out.scorer, texts, spare, background, store=store, key=key)
    if learn:
        out.learner = build_learner(s.learner, s.rep, table, texts, trainer_enc, pub)
    return out


def _train_device(spec: SystemSpec) -> str:
    return spec.device if spec.train_device is None else spec.train_device


def open_store(settings: Any) -> StateStore:
    """The state store of the settings (``STATE_URL``, with the Redis options)."""
    from driftrec.state import open_state

    return open_state(settings.state_url, **settings.redis_options())


# ---- the parts --------------------------------------------------------------------------
def load_encoder(
    model: str | None, lora_r: int = 8, max_len: int = 32, device: str = "auto", seed: int = 0
) -> TextEncoder:
    return TextEncoder(model, max_len=max_len, lora_r=lora_r, device=device, seed=seed)


def base_table(
    encoder: TextEncoder,
    items: Sequence[Item],
    cache_dir: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ItemTable:
    """Text vectors of the catalog under the base encoder (no adapter), cached on disk by
    (model, texts) so that a second run does not re-encode."""
    ids: list[str] = [it.item_id for it in items]
    texts = [it.text for it in items]
    key = hashlib.sha256()
    key.update(f"{encoder.path}|{encoder.max_len}|{encoder.dim}".encode())
    for i, t in zip(ids, texts):
        key.update(f"{i}\x00{t}\x01".encode())
    path = Path(cache_dir) / "vectors" / f"{key.hexdigest()[:24]}.npy" if cache_dir else None
    if path is not None and path.exists():
        vec = np.load(path)
        if vec.shape == (len(ids), encoder.dim):
            return ItemTable.from_text(ids, vec)
    if encoder.lora_config:
        encoder.reset_lora()
    vec = encoder.encode(texts, progress=progress)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.npy")
        np.save(tmp, vec)
        os.replace(tmp, path)
    return ItemTable.from_text(ids, vec)


def build_scorer(
    config: ScorerConfig,
    table: ItemTable,
    rep: Representation,
    encoder: TextEncoder | None = None,
    *,
    item_pop: Mapping[str, float] | None = None,
    item_ts: Mapping[str, int] | None = None,
    base_model: str | None = None,
) -> Scorer:
    """The scorer serving ``table`` as the base version, its ranking pass compiled before
    the first batch. ``base_model``: the name the manifest carries (default: the encoder's,
    or ``"none"``)."""
    if base_model is None:
        base_model = encoder.base_model if encoder is not None else "none"
    model = ServingModel(
        BASE_VERSION,
        table.stored(config.storage_for(len(table.item_ids))),
        rep,
        encoder,
        {"base_model": base_model, "version": BASE_VERSION},
    )
    scorer = Scorer(config, model, item_pop, item_ts)
    if not scorer.ranking_ready():
        log.info("compiling the scorer's ranking pass (once per machine, ~15 s; cached after)")
    scorer.wait_ready()  # before the first batch, not during it
    return scorer


def build_scorer_worker(
    scorer: Scorer,
    state: StateStore,
    sink: Any,
    names: TopicNames,
    group: str,
    *,
    swaps: SwapManager | None = None,
    **kw: Any,
) -> ScorerWorker:
    """The scorer service's worker around ``scorer`` (benchmarks of a scorer made by
    :func:`build_scorer`; a service uses :meth:`System.scorer_worker`)."""
    return ScorerWorker(scorer, state, sink, names, swaps, group, **kw)


def build_swaps(
    scorer: Scorer,
    texts: Mapping[str, str] | None = None,
    standby: TextEncoder | None = None,
    background: bool = True,
    *,
    store: str | None = None,
    key: bytes | str | None = None,
) -> SwapManager:
    """The scorer's swap manager: verifies, prepares and swaps in announced versions."""
    return SwapManager(scorer, texts or {}, standby, background, store=store, key=key)


def build_learner(
    config: LearnerConfig,
    rep: Representation,
    table: ItemTable,
    texts: Mapping[str, str],
    encoder: TextEncoder | None,
    item_ts: Mapping[str, int] | None = None,
) -> Learner:
    return Learner(config, rep, table, texts, encoder, item_ts)


def publication_times(items: Sequence[Item]) -> dict[str, int] | None:
    """Item id -> publication ``ts`` where some item is published after another (then an
    item is a candidate only from its ts on); ``None`` where all share one time (nothing
    to mask, no age to learn from)."""
    ts: dict[str, int] = {it.item_id: it.ts for it in items}
    return ts if len(set(ts.values())) > 1 else None
