#!/usr/bin/env bash
# The whole test suite: installs driftrec with its test extras (into the active virtualenv,
# or ${DRIFTREC_VENV:-.venv}), starts a real Kafka broker and redis-server on localhost
# (scripts/services.sh), the secured pair and a Redis Cluster of 3 masters + 3 replicas
# (up-cluster, REDIS_CLUSTER_URL; skipped with DRIFTREC_SKIP_CLUSTER=1), runs pytest (unit,
# contract, integration, doctests) and stops the services again (those that were not
# already running before it). Extra arguments go to pytest, e.g. scripts/test.sh -m "not integration".
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${VIRTUAL_ENV:-}" ]; then
  VENV="${DRIFTREC_VENV:-.venv}"
  if [ ! -x "$VENV/bin/python" ]; then
    echo "creating virtualenv $VENV" >&2
    python3 -m venv "$VENV"
  fi
  # shellcheck disable=SC1091
  . "$VENV/bin/activate"
fi
echo "installing driftrec[test] into $VIRTUAL_ENV (quick when already there)" >&2
python -m pip install -q --disable-pip-version-check -e ".[test]"

started=0
started_secure=0
started_cluster=0
if [ "${DRIFTREC_SKIP_SERVICES:-0}" != "1" ]; then
  # services someone already had running stay running afterwards; only what this run
  # started is stopped again
  if ! scripts/services.sh status >/dev/null 2>&1; then
    started=1
  fi
  scripts/services.sh up >/dev/null
  eval "$(scripts/services.sh env)"
  # the secured pair (a SASL_SSL broker, a TLS redis-server: tests/integration/test_security.py
  # reads its settings with `scripts/services.sh env-secure`); ~30 s to start
  if [ "${DRIFTREC_SKIP_SECURE:-0}" != "1" ]; then
    if ! scripts/services.sh status-secure >/dev/null 2>&1; then
      started_secure=1
    fi
    scripts/services.sh up-secure >/dev/null
  fi
  # the Redis Cluster: the state contract suite and tests/integration/test_redis_cluster.py
  if [ "${DRIFTREC_SKIP_CLUSTER:-0}" != "1" ]; then
    if ! scripts/services.sh status-cluster >/dev/null 2>&1; then
      started_cluster=1
    fi
    scripts/services.sh up-cluster >/dev/null
    eval "$(scripts/services.sh env-cluster)"
  fi
fi
cleanup() {
  if [ "$started" = 1 ]; then scripts/services.sh down >&2 || true
  elif [ "$started_secure" = 1 ]; then scripts/services.sh down-secure >&2 || true; fi
  if [ "$started_cluster" = 1 ]; then scripts/services.sh down-cluster >&2 || true; fi
}
trap cleanup EXIT

export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
set +e
python -m pytest -q -p no:cacheprovider "$@"
rc=$?
set -e
exit $rc
