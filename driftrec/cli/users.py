"""``driftrec users forget USER_ID [...]``: the flags and the command (the erasing:
:mod:`driftrec.app.users`)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from driftrec.app.settings import Settings
from driftrec.app.users import forget_users


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
    s = Settings.from_env(
        state_url=args.state, kafka_bootstrap=args.bootstrap, topic_prefix=args.topic_prefix
    )
    print(json.dumps(forget_users(s, args.user_ids, args.tombstones)))
    return 0
