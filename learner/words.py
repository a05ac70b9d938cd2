"""The new-words trigger's bookkeeping: how much engagement goes to posts whose words
the adapters have not trained on.

A word is *learned* once an adapter round has seen it engaged at least ``min_count``
times in its training pairs (it was trained on, whether or not the gate kept the update).
The share is over the last ``n`` engagements it is shown (the learner shows it those
older than the window's validation share): those whose item's text carries a word not
learned. After a round it falls to what the feed's long tail keeps it at; a wave of new
names (an artist, a game, a meme) lifts it, long before the next scheduled round.
"""

from __future__ import annotations

import re
from collections import Counter, deque
from collections.abc import Iterable

#: a word: three or more letters (any script), lower-cased; digits and punctuation split
_WORD = re.compile(r"[^\W\d_]{3,}")


def words(text: str) -> frozenset[str]:
    """The words of a text as the trigger counts them.

    >>> sorted(words("Zorblax drops a NEW clip, 2nd take!"))
    ['clip', 'drops', 'new', 'take', 'zorblax']
    """
    return frozenset(_WORD.findall(text.lower()))


class NewWords:
    """Share of the last ``n`` engagements whose item carries a word not learned yet.

    >>> nw = NewWords(n=4, min_count=2)
    >>> for item in "abab":
    ...     nw.observe(item, {"a": "old words", "b": "zorblax words"}[item])
    >>> nw.share()
    1.0
    >>> nw.learned(["old words", "old words", "zorblax words"])  # zorblax: once, too rare
    >>> nw.share()
    0.5
    """

    #: learned words kept at most; past it only the latest round's are (memory stays bounded
    #: however many words a feed ever brings)
    max_words = 1_000_000

    def __init__(self, n: int, min_count: int) -> None:
        self.min_count = min_count
        self._q: deque[str] = deque(maxlen=n)
        self._texts: dict[str, frozenset[str]] = {}  # item -> its words, for items in the queue
        self._new: dict[str, bool] = {}  # item -> carries a word not learned (cache)
        self._in_q: Counter[str] = Counter()  # item -> times in the queue
        self._n_new = 0
        self._known: set[str] = set()

    def _is_new(self, item_id: str) -> bool:
        v = self._new.get(item_id)
        if v is None:
            v = self._new[item_id] = not self._texts[item_id] <= self._known
        return v

    def observe(self, item_id: str, text: str) -> None:
        """One engagement of ``item_id`` whose text is ``text``."""
        q = self._q
        if len(q) == q.maxlen:
            old = q.popleft()
            self._n_new -= self._is_new(old)
            self._in_q[old] -= 1
            if not self._in_q[old]:
                del self._in_q[old]
                self._texts.pop(old, None)
                self._new.pop(old, None)
        w = words(text)
        before = self._texts.get(item_id)
        self._texts[item_id] = w
        if before is not None and before != w:  # its text changed: recount under the new one
            self._new.pop(item_id, None)
            self._n_new = sum(self._is_new(i) for i in q)
        q.append(item_id)
        self._in_q[item_id] += 1
        self._n_new += self._is_new(item_id)

    def share(self) -> float | None:
        """The share of the last ``n`` engagements with a word not learned (None until
        there are ``n``)."""
        q = self._q
        return self._n_new / len(q) if len(q) == q.maxlen else None

    def learned(self, engaged_texts: Iterable[str]) -> None:
        """An adapter round trained on these engagements (one text per engagement): the
        words engaged at least ``min_count`` times are learned."""
        c = Counter(w for t in engaged_texts for w in words(t))
        fresh = {w for w, k in c.items() if k >= self.min_count}
        if len(self._known) + len(fresh) > self.max_words:
            self._known = fresh
        else:
            self._known |= fresh
        self._new.clear()
        self._n_new = sum(self._is_new(i) for i in self._q)
