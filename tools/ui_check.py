"""Check the MLflow UI the way a person sees it, in headless Chromium (Playwright).

It builds a tiny project (the tests' tiny BERT and tiny data), runs two DVC experiments and the
promotion gate into the project's own MLflow store, starts `mlflow ui` on 127.0.0.1 against
that store, and checks in the browser:
  1. the experiment opens on its runs table (a model-training experiment, not the GenAI
     overview), with both runs by their experiment names and the key metric columns;
  2. the compare view of the two runs lines up their params and metrics;
  3. the registered model lists its versions with their aliases, and a version's page shows
     its description (data version, key params, test metrics, the reproduce command).
Screenshots go to --out (default ui_check/). Exit status 0 when every check passes.

Needs: pip install -e ".[test,ui]" and a Chromium (Debian: apt-get install chromium; or
`playwright install chromium`, then --chromium ''). Not run in CI: a browser is a heavy
dependency; tests/test_stages.py checks the same facts through the MLflow API.

Run: python tools/ui_check.py [--out ui_check] [--chromium PATH] [--keep] [--project PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests' tiny-project helpers

from mlflow import MlflowClient  # noqa: E402

from tests.conftest import free_port, make_tiny_bert, wait_for_health  # noqa: E402
from tests.mlops_helpers import new_project, sh  # noqa: E402

log = logging.getLogger("ui_check")
EXPERIMENTS = {"lr-1e-3": "0.001", "lr-3e-3": "0.003"}  # DVC experiment name: train.learning_rate
EXPERIMENT, MODEL = "imdb-sentiment", "imdb-sentiment-classifier"
KEY_METRICS = ("test_accuracy", "test_f1_macro", "test_roc_auc", "best_val_accuracy")
KEY_PARAMS = ("learning_rate", "epochs", "batch_size")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run"]
TIMEOUT_MS = 60_000
# The project's default store: no MLFLOW_TRACKING_URI, so the stages use <project>/mlflow.db.
ENV = {"MLFLOW_TRACKING_URI": None, "DVC_EXP_NAME": None}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="ui_check", help="folder for the screenshots")
    p.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser") or "",
                   help="Chromium executable (default: the system's chromium on PATH); '' for Playwright's own "
                        "(playwright install chromium)")
    p.add_argument("--keep", action="store_true", help="keep the scratch project and print its path")
    p.add_argument("--project", help="check this already built scratch project (from --keep) instead of a new one")
    return p.parse_args()


def build_store(work: Path) -> Path:
    """A tiny project with two DVC experiments and a champion, in <project>/mlflow.db."""
    project = new_project(work / "project", make_tiny_bert(work / "tiny-bert"))
    for name, rate in EXPERIMENTS.items():
        log.info("dvc exp run -S train.learning_rate=%s -n %s", rate, name)
        sh(project, "dvc", "exp", "run", "-S", f"train.learning_rate={rate}", "-n", name, env=ENV)
    done = sh(project, sys.executable, "-m", "bertpipe.promote", "--split", "data/split", env=ENV, check=False)
    if done.returncode not in (0, 3):
        raise RuntimeError(f"the promotion gate failed:\n{done.stderr[-3000:]}")
    return project


@contextlib.contextmanager
def mlflow_ui(project: Path, log_file: Path) -> Iterator[str]:
    """`mlflow ui` on 127.0.0.1 against the project's store, stopped when the block ends."""
    port = free_port()
    with open(log_file, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri",
                                   f"sqlite:///{project / 'mlflow.db'}", "--host", "127.0.0.1", "--port", str(port)],
                                  cwd=project, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(url, server, "mlflow ui", lambda: log_file.read_text()[-3000:])
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


class Checks:
    """Named checks on a page: a failure is recorded with a screenshot, and the rest go on."""

    def __init__(self, page, out: Path) -> None:
        self.page, self.out, self.failures = page, out, []

    def shot(self, name: str) -> None:
        self.page.screenshot(path=str(self.out / f"{name}.png"), full_page=True)
        log.info("screenshot %s", self.out / f"{name}.png")

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        log.info("check: %s", name)
        try:
            yield
        except Exception as err:  # noqa: BLE001 - a failed check is reported, the next one still runs
            self.failures.append(f"{name}: {str(err).splitlines()[0]}")
            self.shot(f"failed-{name.split(':')[0].replace(' ', '-')}")

    def see(self, text: str, exact: bool = True) -> None:
        """Wait until text is visible on the page, as a person would read it."""
        self.page.get_by_text(text, exact=exact).first.wait_for(state="visible")


def check_ui(url: str, project: Path, out: Path, chromium: str) -> list[str]:
    from playwright.sync_api import sync_playwright

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])
            if r.info.run_name in EXPERIMENTS}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium or None, args=CHROMIUM_ARGS)
        # Wide: the runs table draws only the columns that fit (the key ones are added last).
        page = browser.new_page(viewport={"width": 2600, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        checks = Checks(page, out)
        with checks.step("1 runs table: the experiment opens on its runs, with the key columns"):
            runs_table(checks, url, experiment)
        with checks.step("2 compare view of the two runs"):
            compare_view(checks, runs)
        with checks.step("3 model versions with aliases and descriptions"):
            model_versions(checks, url, client)
        browser.close()
    if experiment.tags.get("mlflow.experimentKind") != "custom_model_development":
        checks.failures.append(f"experiment {EXPERIMENT} lacks the tag mlflow.experimentKind=custom_model_development")
    return checks.failures


def runs_table(checks: Checks, url: str, experiment) -> None:
    page = checks.page
    page.goto(f"{url}/#/experiments")
    checks.see(EXPERIMENT)
    checks.shot("0-experiments")
    # MLflow 3.17's UI has a global GenAI / Model training switch (remembered by the browser)
    # that decides what an experiment opens on; a person training models picks Model training.
    page.get_by_text("Model training", exact=True).first.click()
    page.get_by_text(EXPERIMENT, exact=True).first.click()
    for name in EXPERIMENTS:
        checks.see(name)
    if "/runs" not in page.url:
        raise AssertionError(f"the experiment opened on {page.url}, not on its runs table")
    close_assistant(page)
    page.get_by_text("Columns", exact=True).first.click()
    search = page.get_by_placeholder("Search columns")
    for columns, pick in ((KEY_METRICS, "first"), (KEY_PARAMS, "last")):
        for column in columns:
            search.fill(column)
            # Exact text: the search highlights the typed part of longer names too. Metrics are
            # listed before params, so a param named like a metric (learning_rate) is the last.
            getattr(page.get_by_text(column, exact=True), pick).click()
    page.keyboard.press("Escape")
    for column in (*KEY_METRICS, *KEY_PARAMS):
        page.get_by_role("columnheader").filter(has_text=column).first.wait_for(state="visible")
    checks.shot("1-runs-table")


def close_assistant(page) -> None:
    """Close MLflow's assistant side panel when it is open: it takes a third of the width."""
    close = page.get_by_role("button", name="Close")
    if close.count():
        close.first.click()


def compare_view(checks: Checks, runs: dict) -> None:
    page = checks.page
    for name in EXPERIMENTS:  # tick both runs in the table, then Compare
        page.get_by_role("row").filter(has_text=name).get_by_role("checkbox").first.check()
    page.get_by_role("button", name="Compare").first.click()
    checks.see("Comparing 2 Runs", exact=False)
    for name in EXPERIMENTS:
        checks.see(name)
    page.set_viewport_size({"width": 2600, "height": 4000})  # the whole page: plots, params, metrics
    checks.see("Parameters")
    for row in KEY_PARAMS:  # the two runs' params side by side
        page.get_by_text(row, exact=True).last.wait_for()
    # The metrics table scrolls inside its own box and draws only the rows in view (the first,
    # alphabetically, are the best validation metrics); the test metrics are in the runs table.
    for row in ("best_val_accuracy", "best_val_roc_auc"):
        page.get_by_text(row, exact=True).last.wait_for()
    checks.shot("2-compare-runs")
    page.set_viewport_size({"width": 2600, "height": 1000})


def model_versions(checks: Checks, url: str, client: MlflowClient) -> None:
    page = checks.page
    page.goto(f"{url}/#/models/{MODEL}")
    versions = client.search_model_versions(f"name = '{MODEL}'")
    for version in versions:
        checks.see(f"Version {version.version}")
        for alias in version.aliases:
            checks.see(f"@ {alias}", exact=False)
    checks.shot("3-model-versions")
    latest = max(versions, key=lambda v: int(v.version))
    page.goto(f"{url}/#/models/{MODEL}/versions/{latest.version}")
    for text in ("Data (digests of the tokenized splits)", "Key params", "Test metrics", "Reproduce"):
        checks.see(text, exact=False)
    checks.shot("4-model-version")


def main() -> int:
    args = parse_args()
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    os.environ.update({"no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"})
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.project).parent if args.project else Path(tempfile.mkdtemp(prefix="ui-check-"))
    try:
        project = Path(args.project) if args.project else build_store(work)
        with mlflow_ui(project, out / "mlflow_ui.log") as url:
            failures = check_ui(url, project, out, args.chromium)
    finally:
        if args.keep or args.project:
            log.info("scratch project kept in %s", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    for failure in failures:
        log.error("FAILED: %s", failure)
    log.info("%s; screenshots in %s", "all checks passed" if not failures else f"{len(failures)} failed", out)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
