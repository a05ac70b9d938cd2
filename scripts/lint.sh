#!/usr/bin/env bash
# Lint, format check and type check (CI runs this before the tests; see .ci/run).
#   ruff check + ruff format --check over the repository;
#   mypy --strict on the shared model, the two cores, the ports and the event schema.
# Needs ruff and mypy (pip install -e ".[test]" brings both). Fix what ruff can with
#   ruff check --fix . && ruff format .
set -euo pipefail
cd "$(dirname "$0")/.."

ruff check .
ruff format --check .

# mypy cannot follow the package-dir mapping of an editable install: stage a tree shaped
# like the installed package, out of symlinks to the repository's files.
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
cp -rs "$PWD/driftrec" "$stage/driftrec"
for p in stream state scorer learner; do ln -s "$PWD/$p" "$stage/driftrec/$p"; done
STRICT=(
  driftrec.model
  driftrec.scorer.core driftrec.learner.core
  driftrec.learner.age driftrec.learner.candidate driftrec.learner.gate driftrec.learner.losses
  driftrec.learner.neighbours driftrec.learner.pairs driftrec.learner.training driftrec.learner.triggers
  driftrec.stream.ports driftrec.state.ports driftrec.stream.events
  driftrec.app.adaptation
)
args=()
for m in "${STRICT[@]}"; do
  if [ -d "$stage/${m//.//}" ]; then args+=(-p "$m"); else args+=(-m "$m"); fi
done
(cd "$stage" && mypy --config-file "$OLDPWD/pyproject.toml" --strict "${args[@]}")
