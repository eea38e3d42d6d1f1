#!/usr/bin/env bash
# Retrain: what .github/workflows/retrain.yml runs, and what a developer can run locally.
#
# Run: bash ci/retrain.sh [--mode full|pr|train|promote]   (or RETRAIN_MODE=...)
#   full     (default; a developer's machine) dvc pull -> dvc repro -> dvc push -> promotion gate
#   pr       (a pull request) dvc pull -> dvc repro -> the gate as a dry run: it judges the new
#            model against the champion and prints the summary, but moves no alias, sets no
#            tag and pushes nothing to the DVC remote
#   train    (the default branch's training job) dvc pull -> dvc repro -> dvc push; no gate
#   promote  (the default branch's promoting job) the gate only, on the workspace the training
#            job left (models/run.json, data/split), and it promotes
# The gate's markdown summary goes to $RETRAIN_SUMMARY (default retrain_summary.md), and also,
# under GitHub Actions, to the job summary; $GITHUB_OUTPUT gets gate=promoted|kept|
# would-promote|would-keep|refused. Output of dvc and of the gate passes through
# bertpipe.redact, so credentials in remote or tracking URLs are masked.
# MLflow goes to MLFLOW_TRACKING_URI (default sqlite:///mlflow.db); DVC to the default remote.
# Exit status: 0 whether or not the challenger was promoted; non-zero when a step failed or
# the gate refused to judge (foreign run 4, overlapping rows 5, not comparable 6).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${RETRAIN_MODE:-full}
if [[ ${1:-} == --mode ]]; then mode=${2:?--mode needs one of full, pr, train, promote}; fi
summary=${RETRAIN_SUMMARY:-retrain_summary.md}

log() { printf '%s retrain: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
mask() { python -m bertpipe.redact; }

case $mode in
  full|pr|train|promote) ;;
  *) log "unknown mode '$mode': use full, pr, train or promote"; exit 2 ;;
esac
log "mode $mode; DVC remotes: $(dvc remote list 2>&1 | mask | tr '\n\t' '; ')"

if [[ $mode != promote ]]; then
  log "dvc pull (anything the remote lacks, such as on a first run, is reproduced next)"
  dvc pull --allow-missing 2>&1 | mask
  log "dvc repro"
  dvc repro 2>&1 | mask
fi
if [[ $mode == full || $mode == train ]]; then
  log "dvc push"
  dvc push 2>&1 | mask
fi
if [[ $mode == train ]]; then
  exit 0
fi

dry_run=()
if [[ $mode == pr ]]; then dry_run=(--dry-run); fi
log "promotion gate${dry_run:+ (dry run: no alias or tag changes)}"
status=0
python -m bertpipe.promote --run-file models/run.json --split data/split "${dry_run[@]}" | mask > "$summary" \
  || status=$?  # pipefail: the gate's exit status
case $status:$mode in
  0:pr) gate=would-promote ;;
  3:pr) gate=would-keep ;;
  0:*) gate=promoted ;;
  3:*) gate=kept ;;
  4:*|5:*|6:*) gate=refused ;;
  *) log "the promotion gate failed (exit status $status)"; exit "$status" ;;
esac
log "gate: $gate; summary in $summary"
if [[ -n ${GITHUB_STEP_SUMMARY:-} ]]; then cat "$summary" >> "$GITHUB_STEP_SUMMARY"; fi
if [[ -n ${GITHUB_OUTPUT:-} ]]; then echo "gate=$gate" >> "$GITHUB_OUTPUT"; fi
if [[ $gate == refused ]]; then exit "$status"; fi
