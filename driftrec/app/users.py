"""``driftrec users forget USER_ID [...]``: erase users from the state store.

What it does and what it cannot do (topic retention, the learner's window): see
docs/operations.md, "Forgetting a user".
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "users",
        help="forget users (erase their state)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="  driftrec users forget USER_ID [USER_ID ...]   delete the users' state "
        "(vector, history, top-k, last event ids); the learner drops their events "
        "from its window (within ~10 s while it runs, at its next start otherwise)",
    )
    usub = p.add_subparsers(dest="users_command", metavar="ACTION")
    f = usub.add_parser("forget", help="delete users' state; the learner drops their events")
    f.add_argument("user_ids", nargs="+", metavar="USER_ID")
    f.add_argument("--state", metavar="URL", help="state backend, e.g. redis://127.0.0.1:6379/0 (STATE_URL)")
    f.add_argument(
        "--tombstones",
        action="store_true",
        help="also publish a tombstone (key = user, no value) per user on recs.updates "
        "(needs Kafka: KAFKA_BOOTSTRAP, TOPIC_PREFIX)",
    )
    f.add_argument("--bootstrap", metavar="HOST:PORT", help="Kafka bootstrap servers (KAFKA_BOOTSTRAP)")
    f.add_argument("--topic-prefix", metavar="NAME", help="namespace for every topic (TOPIC_PREFIX)")
    f.set_defaults(func=cmd_forget)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def cmd_forget(args: argparse.Namespace) -> int:
    from driftrec.state import open_state

    from .settings import Settings

    s = Settings.from_env(
        state_url=args.state, kafka_bootstrap=args.bootstrap, topic_prefix=args.topic_prefix
    )
    st = open_state(s.state_url, **s.redis_options())  # REDIS_SSL_CAFILE, REDIS_PASSWORD_FILE
    try:
        n = st.forget(args.user_ids, int(time.time() * 1000))
    finally:
        st.close()
    out: dict[str, Any] = {"forgotten": len(set(args.user_ids)), "had_state": n}
    if args.tombstones:
        from driftrec.stream import Message
        from driftrec.stream.kafka import KafkaSink

        from .runtime import TopicNames

        topic = TopicNames(s.topic_prefix).recs
        sink = KafkaSink(s.kafka_bootstrap, security=s.kafka_security())
        try:  # value None: a Kafka tombstone (readers of recs.updates see no value for the user)
            sink.send_many(
                [
                    Message(topic, None, u.encode())  # type: ignore[arg-type]
                    for u in dict.fromkeys(args.user_ids)
                ]
            )
        finally:
            sink.close()
        out["tombstones"] = topic
    print(json.dumps(out))
    return 0
