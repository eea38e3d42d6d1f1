"""CI-triggered retraining: .github/workflows/retrain.yml passes actionlint and keeps to its
policy (triggers, permissions, pins, secrets, environment); ci/retrain.sh runs locally too,
and in its pull-request mode moves no alias and pushes nothing."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from bertpipe.params import load_yaml
from tests.conftest import ROOT
from tests.mlops_helpers import clone_project, mlflow_env, ran_stages, reproduced_project, sh

WORKFLOW = ROOT / ".github/workflows/retrain.yml"
FLOW = load_yaml(WORKFLOW.read_text())
JOBS = FLOW["jobs"]
MAIN_ONLY = "github.event_name != 'pull_request' && github.ref == 'refs/heads/main'"


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
        'if [ -n "$GCP_CREDENTIALS_JSON" ]; then', "if [ -n $GCP_CREDENTIALS_JSON ] then")
    (tmp_path / "retrain.yml").write_text(broken)
    done = actionlint(str(tmp_path / "retrain.yml"))
    assert done.returncode == 1
    assert "workflow_dispach" in done.stdout and "shellcheck" in done.stdout


def steps(job: str | None = None) -> list[dict]:
    return [step for name, spec in JOBS.items() if job in (None, name) for step in spec["steps"]]


def github_glob(pattern: str) -> re.Pattern:
    """A workflow path filter as a regex: ** crosses folders, * does not."""
    parts = re.split(r"(\*\*|\*)", pattern)
    return re.compile("".join(".*" if p == "**" else "[^/]*" if p == "*" else re.escape(p) for p in parts) + r"\Z")


def test_triggers_pull_requests_show_and_only_main_promotes():
    on = FLOW["on"]  # YAML 1.2: `on` is a string (YAML 1.1 would read it as true)
    assert set(on) == {"pull_request", "push", "workflow_dispatch", "schedule"} and on["schedule"][0]["cron"]
    assert on["push"]["branches"] == ["main"] and on["push"]["paths"] == on["pull_request"]["paths"]
    assert set(JOBS) == {"train", "comment", "promote", "publish"}
    train = next(s for s in steps("train") if s.get("run", "").strip().endswith("bash ci/retrain.sh"))
    assert train["env"]["RETRAIN_MODE"] == "${{ github.event_name == 'pull_request' && 'pr' || 'train' }}"
    assert JOBS["comment"]["if"] == "always() && github.event_name == 'pull_request' && needs.train.result != 'skipped'"
    assert any("gh pr comment" in s.get("run", "") for s in steps("comment"))
    promote = JOBS["promote"]
    assert promote["if"] == MAIN_ONLY and JOBS["publish"]["if"] == MAIN_ONLY
    assert promote["environment"] == "production"  # protected: reviewers set in the repository's settings
    assert promote["concurrency"] == {"group": "retrain-promote", "cancel-in-progress": False}  # one, global
    assert [s["run"] for s in steps("promote") if "ci/retrain.sh" in s.get("run", "")] == \
        ["bash ci/retrain.sh --mode promote"]  # the only job that moves aliases


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
    assert grants == {"train": {"contents": "read"}, "comment": {"pull-requests": "write"},
                      "promote": {"contents": "read"}, "publish": {"contents": "write"}}


def test_actions_are_pinned_to_commit_shas():
    text = WORKFLOW.read_text()
    uses = [s["uses"] for s in steps() if "uses" in s]
    assert uses and all(re.fullmatch(r"actions/[a-z-]+@[0-9a-f]{40}", u) for u in uses), uses
    for use in set(uses):  # each pin says which release it is
        assert re.search(re.escape(use) + r"\s+# v\d+\.\d+\.\d+", text), use


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
                    if "secrets." in str(step.get("env", {}))}
    assert with_secrets == {("train", "Point DVC at the remote from the secrets"),
                            ("train", ("Pull, reproduce; a pull request also runs the gate as a dry run, the "
                                       "default branch pushes")),
                            ("promote", "Promotion gate")}


def test_only_the_publishing_job_keeps_the_checkout_credentials():
    for name, job in JOBS.items():
        for step in job["steps"]:
            if step.get("uses", "").startswith("actions/checkout@"):
                assert step["with"]["persist-credentials"] is (name == "publish"), name


def test_a_repository_variable_picks_the_runner_and_the_torch_build():
    runner = "${{ fromJSON(vars.TRAIN_RUNNER || '\"ubuntu-latest\"') }}"
    assert JOBS["train"]["runs-on"] == runner and JOBS["promote"]["runs-on"] == runner  # one set of numbers
    for job in ("train", "promote"):
        install = next(s for s in steps(job) if "pip install" in s.get("run", ""))
        assert install["env"]["TORCH_INDEX"] == "${{ vars.TORCH_INDEX || 'cpu' }}"
        assert 'https://download.pytorch.org/whl/$TORCH_INDEX' in install["run"]


def aliases(project, name: str) -> dict:
    done = sh(project, "python", "-c", "import json, mlflow; print(json.dumps(mlflow.MlflowClient()"
              f".get_registered_model('{name}').aliases))", env=mlflow_env(project))
    return load_yaml(done.stdout)


@pytest.mark.slow
def test_retrain_script_pr_mode_moves_nothing_then_full_mode_judges(tmp_path_factory, tiny_bert, tmp_path):
    project = clone_project(reproduced_project(tmp_path_factory, tiny_bert), tmp_path / "project")
    params = load_yaml((project / "params.yaml").read_text())
    params["train"]["learning_rate"] = 0.002
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    name = params["train"]["registered_model"]
    gh_summary, gh_output = tmp_path / "step_summary.md", tmp_path / "output.txt"
    # MLflow's default store (sqlite:///mlflow.db in the project), as on a developer's machine.
    env = {"MLFLOW_TRACKING_URI": None, "GITHUB_STEP_SUMMARY": str(gh_summary), "GITHUB_OUTPUT": str(gh_output)}
    remote = tmp_path / "bertpipe-dvc-remote"

    pr = sh(project, "bash", "ci/retrain.sh", "--mode", "pr", env=env)
    assert ran_stages(pr.stdout) == ["train", "evaluate"]  # a params change retrains
    summary = (project / "retrain_summary.md").read_text()
    assert "(dry run: no alias or tag changed)" in summary and "| majority class (" in summary
    assert "| challenger v2 (run " in summary and "metrics/test.json" in summary  # the dvc metrics diff table
    assert gh_output.read_text() in ("gate=would-promote\n", "gate=would-keep\n")
    assert gh_summary.read_text() == summary
    assert aliases(project, name) == {}  # nothing moved, nothing tagged
    tags = sh(project, "python", "-c", "import mlflow; print(mlflow.MlflowClient().get_model_version("
              f"'{name}', '2').tags.get('promotion'))", env=mlflow_env(project)).stdout.strip()
    assert tags == "None"
    assert not remote.exists() or not any(remote.rglob("*"))  # and nothing pushed

    full = sh(project, "bash", "ci/retrain.sh", env=env)
    assert ran_stages(full.stdout) == []  # nothing changed: nothing retrained
    verdict = gh_output.read_text().splitlines()[-1]
    assert verdict in ("gate=promoted", "gate=kept")
    assert str(aliases(project, name)["challenger"]) == "2"  # the gate points it at what it judged
    lock = load_yaml((project / "dvc.lock").read_text())
    best = next(o for o in lock["stages"]["train"]["outs"] if o["path"] == "models/best")
    pushed = {p.name for p in remote.rglob("*") if p.is_file()}
    assert best["md5"][2:] in pushed  # dvc push sent the new model (remote: files/md5/<2>/<rest>)
