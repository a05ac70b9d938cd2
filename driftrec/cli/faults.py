"""``driftrec faults``: the fault suite's flags and the command (the suite:
:mod:`driftrec.bench.faults`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from driftrec.bench import faults
from driftrec.bench.testbed import Controls

from .flags import flag_int, options


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "faults",
        help="fault suite against the running Kafka and Redis: kills, restarts, garbage, forged artifacts",
        description=faults.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--bootstrap", default=None, help="Kafka bootstrap servers (default: $KAFKA_BOOTSTRAP)")
    p.add_argument(
        "--redis",
        default=None,
        help="the state's Redis: redis://HOST:PORT/DB or a cluster, redis+cluster://HOST:PORT[,...] "
        "(default: $REDIS_URL)",
    )
    p.add_argument("--model", default=None, help="encoder (default: $DRIFTREC_MODEL or the bundled MiniLM)")
    p.add_argument(
        "--events",
        type=flag_int(20),
        default=4000,
        help="events generated per fault (default 4000; at most 40 a user are kept)",
    )
    p.add_argument("--items", type=flag_int(8), default=300, help="catalog size (default 300)")
    p.add_argument("--partitions", type=flag_int(1, 1000), default=3, help="partitions per topic (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the streams and the garbage")
    p.add_argument(
        "--only",
        nargs="+",
        choices=faults.FAULTS,
        metavar="FAULT",
        help=f"run these faults only (default: all that the --redis backend allows): "
        f"{', '.join(faults.FAULTS)}",
    )
    ctl = Controls()
    for name, what in (
        ("kafka-stop", "stop the broker, keeping its data"),
        ("kafka-start", "start it again"),
        ("redis-stop", "stop Redis, keeping its data"),
        ("redis-start", "start it again"),
        ("cluster-start", "bring a killed cluster node back"),
    ):
        p.add_argument(
            f"--{name}",
            default=getattr(ctl, name.replace("-", "_")),
            help=f"command to {what} (default: scripts/services.sh; e.g. 'docker compose stop kafka')",
        )
    p.add_argument(
        "--master-kill",
        default=ctl.master_kill,
        help="command that kills a Redis Cluster master, with {host} and {port} in it (default: "
        "SIGKILL of the process the master names, on this host)",
    )
    p.add_argument("--json", action="store_true", help='last line: {"faults": [{"fault", "sent", ...}, ...]}')
    p.set_defaults(func=cmd_faults)


def cmd_faults(args: argparse.Namespace) -> int:
    rows = faults.run(options(faults.FaultArgs, args))
    print(faults.table(rows))
    bad = [r["fault"] for r in rows if not faults.row_ok(r)]
    if args.json:
        print(json.dumps({"faults": rows}, separators=(",", ":")))
    if bad:
        print(f"driftrec faults: not met for {', '.join(bad)} (details above, on stderr)", file=sys.stderr)
    return 1 if bad else 0
