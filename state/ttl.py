"""Inactive users expire (``USER_TTL_DAYS``, default off).

Redis before 7.4 cannot expire one field of a hash, so every backend notes each user's
last write (epoch ms) and deletes, when asked (``expire_users``, called by the scorer
between batches), the users not written for ``user_ttl_days``: on Redis a sorted set per
shard next to the users' hashes, swept by one Lua script per shard (the range, the
deletions and the set's cleanup in one step, so a user written meanwhile is never lost).
"""

from __future__ import annotations

from .errors import StateConfigError

#: At most this many users per shard and sweep (Lua's unpack takes a few thousand values).
EXPIRE_LIMIT = 1000
DAY_MS = 86_400_000


def check_ttl(user_ttl_days: float | None) -> float | None:
    """``USER_TTL_DAYS``: None or 0 = off, else a positive number of days.

    >>> check_ttl(None), check_ttl(0), check_ttl("1.5")
    (None, None, 1.5)
    >>> check_ttl(-1)
    Traceback (most recent call last):
    ...
    driftrec.state.errors.StateConfigError: USER_TTL_DAYS must be a positive number of days (or 0: off), not -1
    """
    if user_ttl_days is None:
        return None
    try:
        days = float(user_ttl_days)
    except (TypeError, ValueError):
        days = -1.0
    if days == 0:
        return None
    if not 0 < days < float("inf"):  # NaN fails too
        raise StateConfigError(
            f"USER_TTL_DAYS must be a positive number of days (or 0: off), not {user_ttl_days!r}"
        )
    return days
