"""Train, then swap: the one wiring of the hot-swap protocol (DESIGN.md).

The learner's half, :class:`Publisher`, trains a candidate; when the gate accepts it, it
writes the artifact (atomic rename), registers it and announces it. The scorer's half is
:class:`driftrec.scorer.SwapManager`: it verifies and prepares an announced version off the
hot path and swaps it in between two batches.

Every runner uses these two halves and only differs in how the announcement travels:

- the services: over the ``adapters`` topic of Kafka (:mod:`driftrec.app.scorer_service`,
  :mod:`driftrec.app.learner_service`);
- the embedded runner: over the same topic of the in-process broker
  (:mod:`driftrec.app.embedded`);
- the evaluation harness: handed straight to the scorer's swap manager, prepared in the
  foreground, and swapped in before the next batch (:class:`LocalAdaptation`), so a
  drift test measures the path users run, artifact store included.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from driftrec.learner import Learner, TrainResult
from driftrec.model import new_version, write_artifact
from driftrec.scorer import SwapEvent, SwapManager

log = logging.getLogger("driftrec.adaptation")

Announce = Callable[[dict[str, Any]], None]


class Publisher:
    """Trains the learner and publishes what its gate accepts.

    Parameters
    ----------
    learner : the learner core
    store_dir : the artifact store (``ARTIFACT_DIR``)
    registry : where versions are registered (a :class:`driftrec.state.ModelRegistry`)
    announce : sends the announcement record (the ``adapters`` topic, or a swap manager)
    base_model : the encoder's name, written into the manifest
    version_prefix : version names are ``<prefix><epoch ms>-<4 hex>``
    key : ``ARTIFACT_KEY``: each announcement carries the HMAC-SHA256 of its manifest
    """

    def __init__(
        self,
        learner: Learner,
        store_dir: str,
        registry: Any,
        announce: Announce,
        base_model: str,
        version_prefix: str = "v",
        key: bytes | str | None = None,
    ) -> None:
        self.learner, self.store_dir, self.registry = learner, store_dir, registry
        self.announce, self.base_model, self.version_prefix = announce, base_model, version_prefix
        self.key = key

    def train(self, reason: str) -> tuple[TrainResult, dict[str, Any] | None]:
        """One training round; returns the result and, when accepted, the announcement."""
        res = self.learner.train(reason)
        if not res.accepted:
            log.info(
                "candidate rejected by the gate (%s): val HR@10 %.4f -> %.4f",
                reason,
                res.metrics.get("val_hr_current", 0),
                res.metrics.get("val_hr_candidate", 0),
            )
            return res, None
        version = new_version(self.version_prefix)
        enc = self.learner.encoder
        record = write_artifact(
            self.store_dir,
            version,
            res.lora,
            enc.lora_config if enc is not None else None,
            res.table,
            self.base_model,
            res.window,
            res.metrics,
            key=self.key,
        )
        self.registry.register(record)
        self.announce(record)
        self.learner.accept(res)
        log.info(
            "published adapter %s (%s): val HR@10 %.4f -> %.4f",
            version,
            reason,
            res.metrics["val_hr_current"],
            res.metrics["val_hr_candidate"],
        )
        return res, record


class LocalAdaptation:
    """Both halves in one thread, for the evaluation harness: train when the learner's
    trigger fires, publish through the artifact store, and swap the announced version in
    through the scorer's :class:`SwapManager` before the next batch."""

    def __init__(
        self, learner: Learner, swaps: SwapManager, store_dir: str, base_model: str, registry: Any = None
    ) -> None:
        if registry is None:
            from driftrec.state import MemoryStateStore

            registry = MemoryStateStore()
        self.swaps = swaps
        if swaps.store is None:  # announced uris must resolve inside this store, as in the services
            swaps.store = store_dir
        self.publisher = Publisher(learner, store_dir, registry, swaps.submit, base_model)

    def maybe_train(self) -> tuple[TrainResult | None, SwapEvent | None]:
        """Train if the learner is due; return the result and the swap it led to."""
        reason = self.publisher.learner.due()
        if reason is None:
            return None, None
        res, record = self.publisher.train(reason)
        if record is None:
            return res, None
        self.swaps.wait()
        ev = self.swaps.maybe_swap()
        if ev is None:  # the artifact was rejected on the way in; the learner must not drift
            raise RuntimeError(
                f"version {record['version']} was published but not swapped in: {self.swaps.rejected[-1:]}"
            )
        return res, ev
