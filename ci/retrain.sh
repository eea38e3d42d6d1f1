#!/usr/bin/env bash
# Retrain: what .github/workflows/retrain.yml runs, and what a developer can run locally.
#
# Run: bash ci/retrain.sh [--mode dry-run|full|pr|train|promote]   (or RETRAIN_MODE=...)
#   dry-run  (default) dvc pull -> dvc repro -> the gate as a dry run: it judges the new model
#            against the champion and prints the summary, but moves no alias, sets no tag and
#            pushes nothing to the DVC remote
#   full     (asked for explicitly) dvc pull -> dvc repro -> dvc push -> the gate, which promotes
#   pr       (a pull request's job, which has no credentials) as dry-run, but a failed dvc pull
#            only warns: what could not be pulled is reproduced
#   train    (the default branch's training job) dvc pull -> dvc repro -> dvc push; no gate
#   promote  (the default branch's promoting job) dvc pull split (the rows the gate scores, as
#            dvc.lock names them) -> the gate on models/run.json, which promotes
# DVC_REMOTE_URL, when set, becomes the default remote `ci` in .dvc/config.local for this run,
# with its key from GCP_CREDENTIALS_JSON (gs://) or DVC_SSH_KEY (ssh://) in a file of mode 0600
# in a private temporary folder (S3 reads AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY itself);
# at exit, even a failed one, the key files are deleted and .dvc/config.local is put back.
# The gate's markdown summary goes to $RETRAIN_SUMMARY (default retrain_summary.md), and also,
# under GitHub Actions, to the job summary; $GITHUB_OUTPUT gets gate=promoted|kept|
# would-promote|would-keep|refused. Output of dvc and of the gate passes through
# bertpipe.redact, so credentials in remote or tracking URLs are masked.
# MLflow goes to MLFLOW_TRACKING_URI (default sqlite:///mlflow.db).
# Exit status: 0 when the gate decided, promoted or not (train: when the push succeeded);
# 2 unknown mode; the gate's own status when it refused to judge (run refused 4, overlapping
# rows 5, not comparable 6, the run's git commit 7); any other non-zero status: a step failed.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${RETRAIN_MODE:-dry-run}
if [[ ${1:-} == --mode ]]; then mode=${2:?--mode needs one of dry-run, full, pr, train, promote}; fi
summary=${RETRAIN_SUMMARY:-retrain_summary.md}
keys=""  # the temporary folder of key files, once made

log() { printf '%s retrain: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
mask() { python -m bertpipe.redact; }

# Created empty with mode 0600 before the secret goes in; printf is a builtin, so the secret
# is never a process argument.
write_key() { (umask 077 && install -m 600 /dev/null "$1" && printf '%s' "$2" > "$1"); }

configure_remote() {
  keys=$(mktemp -d "${RUNNER_TEMP:-${TMPDIR:-/tmp}}/retrain-keys.XXXXXX")  # mode 0700
  if [[ -f .dvc/config.local ]]; then cp -p .dvc/config.local "$keys/config.local"; fi
  dvc remote add --local --default --force ci "$DVC_REMOTE_URL" 2>&1 | mask
  case $DVC_REMOTE_URL in
    gs://*) if [[ -n ${GCP_CREDENTIALS_JSON:-} ]]; then
              write_key "$keys/gcp.json" "$GCP_CREDENTIALS_JSON"
              dvc remote modify --local ci credentialpath "$keys/gcp.json"
            fi ;;
    ssh://*) if [[ -n ${DVC_SSH_KEY:-} ]]; then
               write_key "$keys/ssh_key" "$DVC_SSH_KEY"$'\n'  # OpenSSH wants the final newline
               dvc remote modify --local ci keyfile "$keys/ssh_key"
             fi ;;
  esac
}

cleanup() {
  if [[ -z $keys ]]; then return; fi
  if [[ -f $keys/config.local ]]; then cp -p "$keys/config.local" .dvc/config.local; else rm -f .dvc/config.local; fi
  rm -rf "$keys"
}

case $mode in
  dry-run|full|pr|train|promote) ;;
  *) log "unknown mode '$mode': use dry-run, full, pr, train or promote"; exit 2 ;;
esac
trap cleanup EXIT
if [[ -n ${DVC_REMOTE_URL:-} ]]; then configure_remote; fi
log "mode $mode; DVC remotes: $(dvc remote list 2>&1 | mask | tr '\n\t' '; ')"

if [[ $mode == promote ]]; then
  log "dvc pull split (the rows the gate scores)"
  dvc pull split 2>&1 | mask
else
  log "dvc pull (anything the remote lacks, such as on a first run, is reproduced next)"
  if [[ $mode == pr ]]; then
    dvc pull --allow-missing 2>&1 | mask || log "dvc pull failed (no remote credentials?): reproducing instead"
  else
    dvc pull --allow-missing 2>&1 | mask
  fi
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
if [[ $mode == dry-run || $mode == pr ]]; then dry_run=(--dry-run); fi
log "promotion gate${dry_run:+ (dry run: no alias or tag changes)}"
status=0
python -m bertpipe.promote --run-file models/run.json --split data/split "${dry_run[@]}" | mask > "$summary" \
  || status=$?  # pipefail: the gate's exit status
case $status:${dry_run:+dry} in
  0:dry) gate=would-promote ;;
  3:dry) gate=would-keep ;;
  0:) gate=promoted ;;
  3:) gate=kept ;;
  4:*|5:*|6:*|7:*) gate=refused ;;
  *) log "the promotion gate failed (exit status $status)"; exit "$status" ;;
esac
log "gate: $gate; summary in $summary"
if [[ -n ${GITHUB_STEP_SUMMARY:-} ]]; then cat "$summary" >> "$GITHUB_STEP_SUMMARY"; fi
if [[ -n ${GITHUB_OUTPUT:-} ]]; then echo "gate=$gate" >> "$GITHUB_OUTPUT"; fi
if [[ $gate == refused ]]; then exit "$status"; fi
