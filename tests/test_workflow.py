"""CI-triggered retraining: .github/workflows/retrain.yml passes actionlint and calls
ci/retrain.sh, which runs locally too (pull, repro, push, promotion gate, summaries)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from bertpipe.params import load_yaml
from tests.conftest import ROOT
from tests.mlops_helpers import clone_project, ran_stages, reproduced_project, sh

WORKFLOW = ROOT / ".github/workflows/retrain.yml"


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
        'if [ -n "$pr" ]; then', "if [ -n $pr ] then")
    (tmp_path / "retrain.yml").write_text(broken)
    done = actionlint(str(tmp_path / "retrain.yml"))
    assert done.returncode == 1
    assert "workflow_dispach" in done.stdout and "shellcheck" in done.stdout


def test_workflow_triggers_setup_and_secrets():
    flow = load_yaml(WORKFLOW.read_text())
    on = flow["on"]  # YAML 1.2: `on` is a string (YAML 1.1 would read it as true)
    assert set(on) == {"workflow_dispatch", "schedule", "push"} and on["schedule"][0]["cron"]
    assert set(on["push"]["paths"]) == {"params.yaml", "dvc.yaml", "stages/**", "**.dvc"}
    job = flow["jobs"]["retrain"]
    steps = job["steps"]
    assert steps[0]["uses"].startswith("actions/checkout@")
    python = next(s for s in steps if s.get("uses", "").startswith("actions/setup-python@"))
    assert python["with"]["cache"] == "pip"
    runs = [s.get("run", "") for s in steps]
    assert any("pip install" in r and "-e ." in r for r in runs)
    assert any(r.strip() == "bash ci/retrain.sh" for r in runs)  # the work itself is the local script
    assert any("gh pr comment" in r for r in runs)
    assert job["env"]["MLFLOW_TRACKING_URI"] == "${{ secrets.MLFLOW_TRACKING_URI }}"
    assert "secrets.DVC_REMOTE_URL" in WORKFLOW.read_text()


@pytest.mark.slow
def test_retrain_script_runs_locally_on_a_tiny_project(tmp_path_factory, tiny_bert, tmp_path):
    project = clone_project(reproduced_project(tmp_path_factory, tiny_bert), tmp_path / "project")
    params = load_yaml((project / "params.yaml").read_text())
    params["train"]["learning_rate"] = 0.002
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    gh_summary, gh_output = tmp_path / "step_summary.md", tmp_path / "output.txt"
    # MLflow's default store (sqlite:///mlflow.db in the project), as on a developer's machine.
    env = {"MLFLOW_TRACKING_URI": None, "GITHUB_STEP_SUMMARY": str(gh_summary), "GITHUB_OUTPUT": str(gh_output)}

    first = sh(project, "bash", "ci/retrain.sh", env=env)
    assert ran_stages(first.stdout) == ["train", "evaluate"]  # a params change retrains
    assert gh_output.read_text() == "promoted=true\n"  # the first model with an alias becomes champion
    summary = (project / "retrain_summary.md").read_text()
    assert "**promoted**" in summary and "no champion yet" in summary and "| challenger v2 (run " in summary
    assert "metrics/test.json" in summary  # the dvc metrics diff table: the new run against HEAD
    assert gh_summary.read_text() == summary
    pushed = {p.name for p in (tmp_path / "bertpipe-dvc-remote").rglob("*") if p.is_file()}
    lock = load_yaml((project / "dvc.lock").read_text())
    best = next(o for o in lock["stages"]["train"]["outs"] if o["path"] == "models/best")
    assert best["md5"][2:] in pushed  # dvc push sent the new model (remote: files/md5/<2>/<rest>)

    second = sh(project, "bash", "ci/retrain.sh", env=env)
    assert ran_stages(second.stdout) == []  # nothing changed: nothing retrained
    assert gh_output.read_text() == "promoted=true\npromoted=false\n"  # exit 0 either way; the output tells
    assert "already the champion" in (project / "retrain_summary.md").read_text()
