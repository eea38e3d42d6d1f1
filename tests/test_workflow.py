"""CI-triggered retraining: .github/workflows/retrain.yml passes actionlint and keeps to its
policy (triggers, permissions, pins, secrets only in main-only environments, artifacts without
raw texts); ci/retrain.sh runs locally too, dry-runs unless asked to promote, keeps its remote
keys private and deletes them. That its dry-run modes move no alias and push nothing, on a real
project, is proven by round 3 of tests/test_retraining_loop.py."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from bertpipe.params import load_yaml
from tests.conftest import ROOT
from tests.mlops_helpers import sh

WORKFLOW = ROOT / ".github/workflows/retrain.yml"
SCRIPT = ROOT / "ci/retrain.sh"
FLOW = load_yaml(WORKFLOW.read_text())
JOBS = FLOW["jobs"]
MAIN_ONLY = "github.event_name != 'pull_request' && github.ref == 'refs/heads/main'"
# (event, github.ref) -> whether it is the default branch's own run
EVENTS = {("pull_request", "refs/pull/7/merge"): False, ("workflow_dispatch", "refs/heads/feature"): False,
          ("push", "refs/heads/feature"): False, ("workflow_dispatch", "refs/heads/main"): True,
          ("push", "refs/heads/main"): True, ("schedule", "refs/heads/main"): True}
REMOTE_SECRETS = {"DVC_REMOTE_URL", "GCP_CREDENTIALS_JSON", "DVC_SSH_KEY", "AWS_ACCESS_KEY_ID",
                  "AWS_SECRET_ACCESS_KEY"}
MLFLOW_SECRETS = {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                  "MLFLOW_TRACKING_TOKEN"}


def actionlint(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("actionlint")
    if exe is None:
        pytest.fail("actionlint is not installed: pip install -e '.[test]' (it brings actionlint and shellcheck)")
    return subprocess.run([exe, *args], capture_output=True, text=True, check=False)


def test_workflow_passes_actionlint_with_shellcheck():
    done = actionlint("-verbose", str(WORKFLOW))
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'Rule "shellcheck" was disabled' not in done.stderr  # the run: scripts were checked too


def test_actionlint_rejects_a_broken_workflow(tmp_path):
    broken = WORKFLOW.read_text().replace("workflow_dispatch:", "workflow_dispach:").replace(
        'if [ -z "$MLFLOW_TRACKING_URI" ]; then', "if [ -z $MLFLOW_TRACKING_URI ] then")
    (tmp_path / "retrain.yml").write_text(broken)
    done = actionlint(str(tmp_path / "retrain.yml"))
    assert done.returncode == 1
    assert "workflow_dispach" in done.stdout and "shellcheck" in done.stdout


def test_retrain_script_passes_shellcheck():
    exe = shutil.which("shellcheck")
    assert exe, "shellcheck is not installed: pip install -e '.[test]'"
    done = subprocess.run([exe, str(SCRIPT)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout


def steps(job: str | None = None) -> list[dict]:
    return [step for name, spec in JOBS.items() if job in (None, name) for step in spec["steps"]]


def github_glob(pattern: str) -> re.Pattern:
    """A workflow path filter as a regex: ** crosses folders, * does not."""
    parts = re.split(r"(\*\*|\*)", pattern)
    return re.compile("".join(".*" if p == "**" else "[^/]*" if p == "*" else re.escape(p) for p in parts) + r"\Z")


def needs(job: str) -> list[str]:
    found = JOBS[job].get("needs", [])
    return [found] if isinstance(found, str) else found


def runs(job: str, event: str, ref: str) -> bool:
    """Whether GitHub runs job for event on ref, every job before it succeeding when it runs.
    The `if`s here use only ==, !=, &&, ||, always(), github.* and needs.*.result."""
    expr = JOBS[job].get("if", "success()")
    assert re.fullmatch(r"[\w.()' !=&|/-]*", expr) and not re.search(r"!(?!=)", expr), expr
    ran = {name: runs(name, event, ref) for name in needs(job)}
    results = {name: SimpleNamespace(result="success" if r else "skipped") for name, r in ran.items()}
    names = {"github": SimpleNamespace(event_name=event, ref=ref), "needs": SimpleNamespace(**results),
             "always": lambda: True, "success": lambda: all(ran.values())}
    decided = eval(expr.replace("&&", " and ").replace("||", " or "), {"__builtins__": {}}, names)
    return bool(decided) and ("always()" in expr or all(ran.values()))


def retrain_runs(job: str) -> list[str]:
    return [s["run"].strip().splitlines()[-1] for s in steps(job) if "ci/retrain.sh" in s.get("run", "")]


def test_triggers_pull_requests_and_branches_check_and_only_main_promotes():
    on = FLOW["on"]  # YAML 1.2: `on` is a string (YAML 1.1 would read it as true)
    assert set(on) == {"pull_request", "push", "workflow_dispatch", "schedule"} and on["schedule"][0]["cron"]
    assert on["push"]["branches"] == ["main"] and on["push"]["paths"] == on["pull_request"]["paths"]
    assert set(JOBS) == {"check", "comment", "train", "promote", "publish"}
    for (event, ref), on_main in EVENTS.items():
        pull_request = {"comment"} if event == "pull_request" else set()
        expected = {"train", "promote", "publish"} if on_main else {"check"} | pull_request
        assert {job for job in JOBS if runs(job, event, ref)} == expected, (event, ref)
    assert retrain_runs("check") == ["bash ci/retrain.sh --mode pr"]  # a dry run
    assert retrain_runs("train") == ["bash ci/retrain.sh --mode train"]  # pushes, no gate
    assert retrain_runs("promote") == ["bash ci/retrain.sh --mode promote"]  # the only job that moves aliases
    assert any("gh pr comment" in s.get("run", "") for s in steps("comment"))
    assert JOBS["promote"]["concurrency"] == {"group": "retrain-promote", "cancel-in-progress": False}  # one, global
    assert needs("promote") == ["train"] and needs("publish") == ["train"]


def test_the_path_filter_covers_everything_a_stage_runs():
    filters = [github_glob(p) for p in FLOW["on"]["push"]["paths"]]
    stages = load_yaml((ROOT / "dvc.yaml").read_text())["stages"]
    code = {dep for stage in stages.values() for dep in stage["deps"] if (ROOT / dep).is_file() and
            dep.endswith(".py")}
    assert code and {"stages/train.py", "bertpipe/lineage.py"} <= code
    needed = code | {"dvc.yaml", "dvc.lock", "params.yaml", "pyproject.toml", "data/raw/reviews.csv.dvc",
                     "ci/retrain.sh", ".github/workflows/retrain.yml"}
    assert [path for path in sorted(needed) if not any(f.match(path) for f in filters)] == []
    assert not any(f.match("README.md") for f in filters)  # documentation does not retrain


def test_permissions_are_none_at_the_top_and_granted_per_job():
    assert FLOW["permissions"] == {}
    grants = {name: job["permissions"] for name, job in JOBS.items()}
    assert grants == {"check": {"contents": "read"}, "comment": {"pull-requests": "write"},
                      "train": {"contents": "read"}, "promote": {"contents": "read"},
                      "publish": {"contents": "write"}}


def test_pull_request_and_branch_jobs_get_no_secrets_and_a_read_only_token():
    off_main = {job for job in JOBS for (event, ref), on_main in EVENTS.items()
                if not on_main and runs(job, event, ref)}
    assert off_main == {"check", "comment"}
    for name in off_main:
        assert "secrets." not in str(JOBS[name]), name
        assert "environment" not in JOBS[name], name
        uses = [s.get("uses", "") for s in steps(name)]
        if any(u.startswith("actions/checkout@") for u in uses):  # runs the branch's code
            assert JOBS[name]["permissions"] == {"contents": "read"}, name
        else:  # comment: checks out and runs nothing of the branch, only posts its summary
            assert JOBS[name]["permissions"] == {"pull-requests": "write"}, name
            assert not any("python" in s.get("run", "") or "retrain.sh" in s.get("run", "") for s in steps(name))
    check = next(s for s in steps("check") if "ci/retrain.sh" in s.get("run", ""))
    assert check["env"] == {"MLFLOW_TRACKING_URI": "sqlite:///mlflow.db"}  # a throwaway store on the runner


def test_every_job_with_secrets_runs_in_a_main_only_environment():
    with_secrets = {name for name, job in JOBS.items() if "secrets." in str(job)}
    assert {name: JOBS[name].get("environment") for name in with_secrets} == \
        {"train": "training", "promote": "production"}  # both: deployment branches main only
    for name in with_secrets:
        assert JOBS[name]["if"] == MAIN_ONLY, name
        assert not any(runs(name, event, ref) for (event, ref), on_main in EVENTS.items() if not on_main), name
        step = next(s for s in steps(name) if "ci/retrain.sh" in s.get("run", ""))
        # MLflow secrets in both environments; without a tracking server the step stops before anything runs
        assert {k for k, v in step["env"].items() if "secrets." in v} == MLFLOW_SECRETS | REMOTE_SECRETS, name
        assert all(step["env"][k] == f"${{{{ secrets.{k} }}}}" for k in MLFLOW_SECRETS | REMOTE_SECRETS), name
        script = step["run"]
        assert script.index('[ -z "$MLFLOW_TRACKING_URI" ]') < script.index("exit 1") < script.index("ci/retrain.sh")


def test_no_expression_in_scripts_and_secrets_only_in_the_steps_that_use_them():
    for step in steps():
        assert "${{" not in step.get("run", ""), step.get("name")  # values come in through env
    for name, job in JOBS.items():
        assert "secrets." not in str(job.get("env", {})), name  # never for the whole job
        for step in job["steps"]:
            if "pip install" in step.get("run", ""):
                assert "secrets." not in str(step.get("env", {})), f"{name}: {step['name']}"
    assert "env" not in FLOW
    with_secrets = {(name, step.get("name")) for name, job in JOBS.items() for step in job["steps"]
                    if "secrets." in str(step)}
    assert with_secrets == {("train", "Pull, reproduce, push"), ("promote", "Pull the split, run the promotion gate")}


def upload_paths() -> dict[str, list[str]]:
    return {s["with"]["name"]: s["with"]["path"].split() for s in steps()
            if s.get("uses", "").startswith("actions/upload-artifact@")}


def test_no_artifact_carries_raw_texts_or_the_mlflow_store():
    uploads = upload_paths()
    assert uploads["retrain-outputs"] == ["dvc.lock", "metrics/", "models/run.json"]
    for name, paths in uploads.items():
        for path in paths:
            assert not re.match(r"(data|reports|mlruns|mlartifacts)(/|\Z)|mlflow\.db\Z", path), (name, path)
        assert set(paths) <= {"dvc.lock", "metrics/", "models/run.json", "retrain_summary.md"}, name
    for step in steps():
        if step.get("uses", "").startswith("actions/upload-artifact@"):
            assert 1 <= step["with"]["retention-days"] <= 7, step["with"]["name"]
    # What travels is what git tracks anyway: every pipeline output under an uploaded path is
    # `cache: false` (raw texts, such as reports/errors.csv, are cached outputs, never committed).
    stages = load_yaml((ROOT / "dvc.yaml").read_text())["stages"]
    outs = [entry if isinstance(entry, dict) else {entry: {}} for stage in stages.values()
            for kind in ("outs", "metrics", "plots") for entry in stage.get(kind, [])]
    travelling = {path: spec for entry in outs for path, spec in entry.items()
                  if any(path.startswith(up.rstrip("/")) for up in uploads["retrain-outputs"])}
    assert "models/run.json" in travelling and "metrics/test.json" in travelling
    assert {path: spec for path, spec in travelling.items() if spec != {"cache": False}} == {}


def test_the_promoting_job_pulls_the_split_it_scores():
    stages = load_yaml((ROOT / "dvc.yaml").read_text())["stages"]
    assert "data/split" in stages["split"]["outs"]  # so `dvc pull split` (promote mode) brings it
    order = [s.get("uses", "").split("@")[0] or s.get("run", "") for s in steps("promote")]
    assert order.index("actions/download-artifact") < next(i for i, r in enumerate(order) if "ci/retrain.sh" in r)
    install = next(s for s in steps("promote") if "pip install" in s.get("run", ""))
    assert '"dvc[s3,gs,ssh]"' in install["run"]  # the remote's plugins, to pull


def test_the_publishing_job_runs_no_project_code():
    assert JOBS["publish"]["if"] == MAIN_ONLY and "environment" not in JOBS["publish"]
    uses = [s["uses"].split("@")[0] for s in steps("publish") if "uses" in s]
    assert uses == ["actions/checkout", "actions/download-artifact"]
    script = " ".join(s.get("run", "") for s in steps("publish"))
    assert not re.search(r"\b(python3?|pip|dvc|bash|sh) |ci/retrain", script), script


def test_actions_are_pinned_to_commit_shas():
    text = WORKFLOW.read_text()
    uses = [s["uses"] for s in steps() if "uses" in s]
    assert uses and all(re.fullmatch(r"actions/[a-z-]+@[0-9a-f]{40}", u) for u in uses), uses
    for use in set(uses):  # each pin says which release it is
        assert re.search(re.escape(use) + r"\s+# v\d+\.\d+\.\d+", text), use


def test_only_the_publishing_job_keeps_the_checkout_credentials():
    for name, job in JOBS.items():
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is (name == "publish"), name


def test_a_repository_variable_picks_the_runner_and_the_torch_build():
    runner = "${{ fromJSON(vars.TRAIN_RUNNER || '\"ubuntu-latest\"') }}"
    for job in ("check", "train", "promote"):  # one set of numbers
        assert JOBS[job]["runs-on"] == runner, job
        install = next(s for s in steps(job) if "pip install" in s.get("run", ""))
        assert install["env"]["TORCH_BUILD"] == "${{ vars.TORCH_BUILD || 'cpu' }}"
        # The README's install lines for the CPU build (tests/test_pinning.py checks them), the CUDA lock otherwise.
        readme = (ROOT / "README.md").read_text()
        for line in ("python -m pip install -r requirements/cpu.lock",
                     "python -m pip install -r requirements/cuda.lock",
                     "python -m pip install --no-deps --no-build-isolation -e ."):
            assert line in install["run"] and line in readme


# --- ci/retrain.sh with dvc's data commands and the gate stubbed ------------------------------

# dvc for these tests: every command is logged; remote and config commands go to the real dvc
# when $REAL_DVC names it; pull records the key files .dvc/config.local points at then (their
# mode, their folder's mode, a copy) and exits with $FAKE_PULL_STATUS.
FAKE_DVC = """#!/usr/bin/env bash
printf 'dvc %s\\n' "$*" >> "$CALLS"
case $1 in
  remote|config) if [[ -n ${REAL_DVC:-} ]]; then exec "$REAL_DVC" "$@"; fi ;;
  pull) for key in $(sed -n 's/^ *\\(keyfile\\|credentialpath\\) = //p' .dvc/config.local 2>/dev/null); do
          stat -c 'mode %a %n' "$key" "$(dirname "$key")" >> "$CALLS"; cp "$key" "$SEEN/"
        done
        exit "${FAKE_PULL_STATUS:-0}" ;;
esac
"""
# python for these tests: the gate is logged and exits with $FAKE_GATE_STATUS; the rest is Python.
FAKE_PYTHON = """#!/usr/bin/env bash
if [[ $1 == -m && $2 == bertpipe.promote ]]; then
  printf 'gate %s\\n' "${*:3}" >> "$CALLS"; echo "## Promotion gate"; exit "${FAKE_GATE_STATUS:-0}"
fi
exec "$REAL_PYTHON" "$@"
"""
GATE = "gate --run-file models/run.json --split data/split"
FAKE_KEYS = {  # c2VjcmV0: what must never be printed
    "DVC_SSH_KEY": "-----BEGIN OPENSSH PRIVATE KEY-----\nc2VjcmV0\n-----END OPENSSH PRIVATE KEY-----",
    "GCP_CREDENTIALS_JSON": '{"private_key": "-----BEGIN PRIVATE KEY-----\\nc2VjcmV0\\n-----END PRIVATE KEY-----\\n"}',
}


class Retrain:
    """ci/retrain.sh in a folder of its own, with PATH's dvc and python stubbed; with_dvc() makes
    it a git + DVC repo whose remote and config commands the real dvc runs."""

    def __init__(self, tmp_path: Path):
        self.repo, self.tmp, self.seen = tmp_path / "repo", tmp_path / "tmp", tmp_path / "seen"
        self.calls, self.output = tmp_path / "calls.log", tmp_path / "github_output.txt"
        for folder in (self.repo / "ci", self.tmp, self.seen, tmp_path / "bin"):
            folder.mkdir(parents=True)
        shutil.copy2(SCRIPT, self.repo / "ci/retrain.sh")
        for name, text in (("dvc", FAKE_DVC), ("python", FAKE_PYTHON)):
            (tmp_path / "bin" / name).write_text(text)
            (tmp_path / "bin" / name).chmod(0o755)
        unset = dict.fromkeys(REMOTE_SECRETS | MLFLOW_SECRETS | {"RETRAIN_MODE", "RUNNER_TEMP", "GITHUB_STEP_SUMMARY"})
        self.env = {**unset, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}",
                    "REAL_PYTHON": sys.executable, "CALLS": str(self.calls), "SEEN": str(self.seen),
                    "TMPDIR": str(self.tmp), "GITHUB_OUTPUT": str(self.output)}

    def with_dvc(self) -> Retrain:
        sh(self.repo, "git", "init", "-q")
        sh(self.repo, "dvc", "init", "-q")
        self.env["REAL_DVC"] = shutil.which("dvc")
        return self

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        self.calls.write_text("")
        self.output.write_text("")
        return sh(self.repo, "bash", "ci/retrain.sh", *args, env={**self.env, **env}, check=False)

    def steps(self) -> list[str]:
        """What the script asked for, the real dvc's remote and config commands left out."""
        return [line for line in self.calls.read_text().splitlines()
                if not line.startswith(("dvc remote", "dvc config", "mode "))]


@pytest.fixture
def retrain(tmp_path) -> Retrain:
    return Retrain(tmp_path)


@pytest.mark.parametrize(("args", "env", "expected"), [
    ((), {}, ["dvc pull --allow-missing", "dvc repro", f"{GATE} --dry-run"]),  # no mode: a dry run
    (("--mode", "dry-run"), {}, ["dvc pull --allow-missing", "dvc repro", f"{GATE} --dry-run"]),
    (("--mode", "pr"), {}, ["dvc pull --allow-missing", "dvc repro", f"{GATE} --dry-run"]),
    (("--mode", "full"), {}, ["dvc pull --allow-missing", "dvc repro", "dvc push", GATE]),
    ((), {"RETRAIN_MODE": "full"}, ["dvc pull --allow-missing", "dvc repro", "dvc push", GATE]),
    (("--mode", "train"), {}, ["dvc pull --allow-missing", "dvc repro", "dvc push"]),
    (("--mode", "promote"), {}, ["dvc pull split", GATE]),
])
def test_retrain_modes_dry_run_by_default_and_push_or_promote_only_when_asked(retrain, args, env, expected):
    done = retrain(*args, **env)
    assert done.returncode == 0, done.stderr
    assert retrain.steps() == expected


def test_retrain_rejects_an_unknown_mode(retrain):
    done = retrain("--mode", "ful")
    assert done.returncode == 2 and "unknown mode 'ful': use dry-run, full, pr, train or promote" in done.stderr
    assert retrain.steps() == []


@pytest.mark.parametrize(("args", "status", "verdict"), [
    ((), 0, "would-promote"), ((), 3, "would-keep"), ((), 7, "refused"),
    (("--mode", "full"), 0, "promoted"), (("--mode", "promote"), 3, "kept"),
    (("--mode", "promote"), 4, "refused"), (("--mode", "promote"), 5, "refused"),
    (("--mode", "promote"), 6, "refused"), (("--mode", "promote"), 7, "refused"),
    (("--mode", "promote"), 1, None),
])
def test_retrain_maps_the_gates_exit_status(retrain, args, status, verdict):
    done = retrain(*args, FAKE_GATE_STATUS=str(status))
    assert done.returncode == (0 if status in (0, 3) else status), done.stderr
    assert retrain.output.read_text() == (f"gate={verdict}\n" if verdict else "")
    assert (retrain.repo / "retrain_summary.md").read_text() == "## Promotion gate\n"
    if verdict is None:
        assert "the promotion gate failed (exit status 1)" in done.stderr


def test_a_pull_request_reproduces_what_it_cannot_pull_and_a_dry_run_stops(retrain):
    pr = retrain("--mode", "pr", FAKE_PULL_STATUS="1")
    assert pr.returncode == 0 and "dvc pull failed (no remote credentials?): reproducing instead" in pr.stderr
    assert retrain.steps() == ["dvc pull --allow-missing", "dvc repro", f"{GATE} --dry-run"]
    dry = retrain(FAKE_PULL_STATUS="1")
    assert dry.returncode == 1 and retrain.steps() == ["dvc pull --allow-missing"]


def test_remote_keys_are_written_private_before_their_content():
    write_key = next(line for line in SCRIPT.read_text().splitlines() if line.startswith("write_key()"))
    assert re.search(r"umask 077 && install -m 600 /dev/null \"\$1\" && printf '%s' \"\$2\" > \"\$1\"", write_key)


@pytest.mark.parametrize(("url", "secret", "option", "mode", "pull_status"), [
    ("ssh://ci:hunter2@example.com/dvc", "DVC_SSH_KEY", "keyfile", "train", "1"),  # the step fails
    ("gs://bucket/dvc", "GCP_CREDENTIALS_JSON", "credentialpath", "promote", "0"),
])
def test_remote_keys_are_private_while_used_and_gone_after(retrain, url, secret, option, mode, pull_status):
    value = FAKE_KEYS[secret]
    own = "[core]\n    autostage = true\n"  # a developer's own local config: put back as it was
    (retrain.with_dvc().repo / ".dvc/config.local").write_text(own)
    done = retrain("--mode", mode, DVC_REMOTE_URL=url, **{secret: value}, FAKE_PULL_STATUS=pull_status)
    assert done.returncode == int(pull_status), done.stderr
    modes = re.findall(r"^mode (\d+) (\S+)$", retrain.calls.read_text(), re.M)
    assert len(modes) == 2, retrain.calls.read_text()  # the key and its folder, while dvc pull ran
    (key_mode, key), (dir_mode, folder) = modes
    assert (key_mode, dir_mode) == ("600", "700") and Path(key).parent == Path(folder)
    assert Path(folder).parent == retrain.tmp and Path(folder).name.startswith("retrain-keys.")
    copy = retrain.seen / Path(key).name
    assert copy.read_text() == (value + "\n" if secret == "DVC_SSH_KEY" else value)
    assert f"dvc remote modify --local ci {option} {key}" in retrain.calls.read_text()
    assert not Path(folder).exists() and list(retrain.tmp.glob("retrain-keys.*")) == []  # deleted at exit
    assert (retrain.repo / ".dvc/config.local").read_text() == own  # the `ci` remote gone, the rest kept
    for text in ("c2VjcmV0", "hunter2"):  # nothing printed the key or the URL's password
        assert text not in done.stdout + done.stderr
