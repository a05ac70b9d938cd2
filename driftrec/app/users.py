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
    p = sub.add_parser("users", help="forget users (erase their state)",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="  driftrec users forget USER_ID [USER_ID ...]   delete the users' state "
                                   "(vector, history, top-k, last event ids); the learner drops their events "
                                   "from its window (within ~10 s while it runs, at its next start otherwise)")
    usub = p.add_subparsers(dest="users_command", metavar="ACTION")
    f = usub.add_parser("forget", help="delete users' state; the learner drops their events")
    f.add_argument("user_ids", nargs="+", metavar="USER_ID")
    f.add_argument("--state", metavar="URL", help="state backend, e.g. redis://127.0.0.1:6379/0 (STATE_URL)")
    f.set_defaults(func=cmd_forget)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def cmd_forget(args: argparse.Namespace) -> int:
    from driftrec.state import open_state

    from .settings import Settings

    s = Settings.from_env(state_url=args.state)
    st = open_state(s.state_url, **s.redis_options())  # REDIS_SSL_CAFILE, REDIS_PASSWORD_FILE
    try:
        n = st.forget(args.user_ids, int(time.time() * 1000))
    finally:
        st.close()
    print(json.dumps({"forgotten": len(set(args.user_ids)), "had_state": n}))
    return 0
