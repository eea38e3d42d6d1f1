#!/usr/bin/env bash
# Retrain: what .github/workflows/retrain.yml runs, and what a developer can run locally.
#   dvc pull -> dvc repro -> dvc push -> promotion gate (python -m bertpipe.promote)
# The gate's markdown summary (challenger and champion side by side, `dvc metrics diff`) goes
# to $RETRAIN_SUMMARY (default retrain_summary.md), and also, under GitHub Actions, to the job
# summary; $GITHUB_OUTPUT gets promoted=true|false.
# MLflow goes to MLFLOW_TRACKING_URI (default sqlite:///mlflow.db); DVC to the default remote.
# Exit status: 0 whether or not the challenger was promoted; non-zero when a step failed.
#
# Run: bash ci/retrain.sh
set -euo pipefail
cd "$(dirname "$0")/.."
summary=${RETRAIN_SUMMARY:-retrain_summary.md}

log() { printf '%s retrain: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

log "dvc pull (anything the remote lacks, such as on a first run, is reproduced next)"
dvc pull --allow-missing
log "dvc repro"
dvc repro
log "dvc push"
dvc push
log "promotion gate"
status=0
python -m bertpipe.promote --split data/split > "$summary" || status=$?
case $status in
  0) promoted=true ;;
  3) promoted=false ;;
  *) log "the promotion gate failed (exit status $status)"; exit "$status" ;;
esac
log "promoted: $promoted; summary in $summary"
if [[ -n ${GITHUB_STEP_SUMMARY:-} ]]; then cat "$summary" >> "$GITHUB_STEP_SUMMARY"; fi
if [[ -n ${GITHUB_OUTPUT:-} ]]; then echo "promoted=$promoted" >> "$GITHUB_OUTPUT"; fi
