"""Check the MLflow UI the way a person sees it, in headless Chromium (Playwright).

It builds a tiny project in a scratch folder (a 2-layer BERT of width 32, 64 training reviews),
runs two DVC experiments into the project's own MLflow store and the promotion gate on the
second, starts `mlflow ui` on 127.0.0.1 against that store, and checks in the browser:
  1. the link the train stage logs opens the experiment's runs table (not the GenAI overview),
     with both runs by their experiment names and exactly the key columns, filled in;
  2. the GenAI | Model training switch, clicked once, makes the experiment open on its runs;
  3. a run's Model metrics open on the loss curves (the first section, line charts);
  4. the compare view of the two runs lines up their params;
  5. the registered model's page shows every alias the registry holds, `champion` among them,
     on its version, and a version's page shows its description.
The tiny model does not beat the baselines, so the gate keeps it out; the check then sets
`champion` by hand (and says so) to see it in the UI. Screenshots go to --out; with --docs
the two pictures in the README (docs/mlflow-runs.png, docs/mlflow-curves.png) are rewritten.
Exit status 0 when every check passes.

Needs: pip install -e ".[ui]" (Playwright) and Debian's Chromium (apt-get install -y chromium).

Run: python tools/ui_check.py [--out ui_check] [--docs docs] [--chromium /usr/bin/chromium]
       [--keep] [--project PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import yaml
from mlflow import MlflowClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's bertpipe, as the scratch project's stages run it

from bertpipe.params import load_yaml  # noqa: E402
from bertpipe.registry import CHAMPION, set_champion  # noqa: E402
from bertpipe.tracking import KEY_PARAMS, LOCAL_UI, metric_key, runs_link, runs_view_state  # noqa: E402
from tools.tiny_bert import make_tiny_bert  # noqa: E402

log = logging.getLogger("ui_check")
EXPERIMENTS = {"lr-1e-3": "0.001", "lr-3e-3": "0.003"}  # DVC experiment name: train.learning_rate
PROJECT_FILES = ("stages", "bertpipe", "data/raw", "dvc.yaml", "params.yaml", "pyproject.toml", ".gitignore")
TINY_PARAMS = {  # two experiments in about 2 minutes of CPU; the tests use the same sizes
    "split": {"max_train": 64, "max_val": 32, "max_test": 32},
    "tokenize": {"max_length": 64, "head_tokens": 16},
    "train": {"epochs": 2, "min_steps": 0, "batch_size": 8, "learning_rate": 1e-3, "log_every_steps": 2,
              "eval_every_steps": 3, "save_every_steps": 4, "precision": "fp32", "group_batches": 2},
}
LINK_LINE = re.compile(r"runs table, key columns \(with `mlflow ui` running\): (\S+)")
CURVE_SECTION = metric_key("train", "loss").split("/")[0]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
VIEWPORT = {"width": 1440, "height": 720}  # a laptop screen: the key columns fit
TIMEOUT_MS = 60_000
# The project's default store: no MLFLOW_TRACKING_URI, so the stages use <project>/mlflow.db.
ENV = {"MLFLOW_TRACKING_URI": None, "DVC_EXP_NAME": None}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="ui_check", help="folder for the screenshots")
    p.add_argument("--docs", help="also write the README's two pictures (mlflow-runs.png, mlflow-curves.png) here")
    p.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium", help="Chromium executable")
    p.add_argument("--keep", action="store_true", help="keep the scratch project and print its path")
    p.add_argument("--project", help="check this scratch project (from --keep) again instead of building one")
    return p.parse_args()


# --- the scratch project -------------------------------------------------------------------------

def sh(cwd: Path, *cmd: str) -> str:
    """Run cmd in cwd (MLFLOW_TRACKING_URI and DVC_EXP_NAME unset); its output, or an error with its end."""
    env = {k: v for k, v in {**os.environ, **ENV}.items() if v is not None}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    return done.stdout + done.stderr


def new_project(dest: Path, model: Path) -> Path:
    """This checkout's pipeline in a new git repo, on the tiny configuration, committed."""
    for name in PROJECT_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    params = load_yaml((ROOT / "params.yaml").read_text())
    for section, values in {**TINY_PARAMS, "tokenize": {**TINY_PARAMS["tokenize"], "model": str(model)}}.items():
        params[section].update(values)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    sh(dest, "git", "init", "-q", "-b", "main")
    sh(dest, "git", "config", "user.email", "ui-check@example.com")
    sh(dest, "git", "config", "user.name", "ui-check")
    sh(dest, "dvc", "init", "-q")
    sh(dest, "git", "add", "-A")
    sh(dest, "git", "commit", "-qm", "tiny project")
    return dest


def run_experiments(project: Path) -> str:
    """Two DVC experiments and a champion in the project's store; the runs-table link train logged."""
    links = []
    for name, rate in EXPERIMENTS.items():
        log.info("dvc exp run -S train.learning_rate=%s -n %s", rate, name)
        links += LINK_LINE.findall(sh(project, "dvc", "exp", "run", "-S", f"train.learning_rate={rate}", "-n", name))
    # The experiments ran in the workspace (params.yaml changed, not committed): judged anyway.
    env = {k: v for k, v in {**os.environ, **ENV}.items() if v is not None}
    gate = subprocess.run([sys.executable, "-m", "bertpipe.promote", "--run-file", "models/run.json", "--split",
                           "data/split", "--allow-foreign-commit"], cwd=project, env=env, capture_output=True,
                          text=True, check=False)
    if gate.returncode not in (0, 3):  # 0 promoted, 3 kept out
        raise RuntimeError(f"the promotion gate failed ({gate.returncode}):\n{gate.stderr[-3000:]}")
    client = client_of(project)
    model = load_yaml((project / "params.yaml").read_text())["train"]["registered_model"]
    if CHAMPION not in client.get_registered_model(model).aliases:
        log.warning("the gate promoted no model (exit %d: the tiny model does not beat the baselines); "
                    "setting @%s to version 1 by hand, to see it in the UI", gate.returncode, CHAMPION)
        set_champion(client, model, "1")
    link = links[-1] if links else "none"
    (project / "runs_link.txt").write_text(link)
    return link


def client_of(project: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{project / 'mlflow.db'}")


# --- the UI ----------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def mlflow_ui(project: Path, log_file: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """`mlflow ui` on 127.0.0.1 against the project's store (its tables made first, so that the
    server and the stages do not race to make them), stopped when the block ends."""
    client_of(project).search_experiments()  # creates the store's tables
    port = free_port()
    with open(log_file, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "mlflow", "ui", "--backend-store-uri",
                                   f"sqlite:///{project / 'mlflow.db'}", "--host", "127.0.0.1", "--port", str(port)],
                                  cwd=project, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.terminate()
        server.wait(timeout=30)


def wait_until_up(url: str, server: subprocess.Popen, log_file: Path, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2).read()
            return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow ui did not start:\n{log_file.read_text()[-3000:]}") from None
            time.sleep(0.5)


class Checks:
    """Named checks on a page: a failure is recorded with a screenshot, and the rest go on."""

    def __init__(self, page, out: Path, docs: Path | None) -> None:
        self.page, self.out, self.docs, self.failures = page, out, docs, []

    def shot(self, name: str, docs_name: str | None = None, height: int | None = None) -> None:
        """A screenshot of the viewport (its top `height` pixels); with --docs, also a README picture."""
        path = self.out / f"{name}.png"
        clip = {"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height} if height else None
        self.page.screenshot(path=str(path), clip=clip)
        log.info("screenshot %s", path)
        if self.docs and docs_name:
            small_png(path, self.docs / docs_name)

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        log.info("check: %s", name)
        try:
            yield
        except Exception as err:  # noqa: BLE001 - a failed check is reported, the next one still runs
            self.failures.append(f"{name}: {str(err).splitlines()[0]}")
            self.shot(f"failed-{name.split(' ')[0]}")

    def see(self, text: str, exact: bool = True, within=None) -> None:
        """Wait until text is visible, as a person would read it."""
        (within or self.page).get_by_text(text, exact=exact).first.wait_for(state="visible")


def small_png(src: Path, dest: Path) -> None:
    """A screenshot in 128 colours: a UI has few, and the README's pictures stay small in git."""
    from PIL import Image

    dest.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(src) as image:
        image.convert("RGB").quantize(colors=128).save(dest, optimize=True)
    log.info("picture %s (%d kB)", dest, dest.stat().st_size // 1024)


def close_assistant(page) -> None:
    """Close MLflow's assistant panel, which a local server opens on a browser's first visit."""
    close = page.get_by_role("button", name="Close", exact=True)
    if close.count():
        close.first.click()


def check_ui(url: str, project: Path, link: str, out: Path, docs: Path | None, chromium: str) -> list[str]:
    from playwright.sync_api import sync_playwright

    client = client_of(project)
    params = load_yaml((project / "params.yaml").read_text())["train"]
    experiment = client.get_experiment_by_name(params["mlflow_experiment"])
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        page.set_default_timeout(TIMEOUT_MS)
        checks = Checks(page, out, docs)
        expected = runs_link(experiment.experiment_id)  # what train logs for a local store
        with checks.step("1 runs table: train's link opens it, with the key columns"):
            if link != expected:
                raise AssertionError(f"train logged the runs table's link as {link}, not {expected}")
            runs_table(checks, expected.replace(LOCAL_UI, url), runs)
        with checks.step("2 the Model training switch: clicked once, experiments open on their runs"):
            model_training_switch(checks, url, experiment.name)
        with checks.step("3 run page: the loss curves first"):
            curves(checks, runs)
        with checks.step("4 compare view of the two runs"):
            compare_view(checks, expected.replace(LOCAL_UI, url))
        with checks.step("5 registered model: aliases and a version's description"):
            model_versions(checks, url, client, params["registered_model"])
        browser.close()
    return checks.failures


def runs_table(checks: Checks, link: str, runs: dict) -> None:
    page = checks.page
    page.goto(link)
    for name in EXPERIMENTS:
        checks.see(name)
    if "/runs" not in page.url:
        raise AssertionError(f"the link opened {page.url}, not the runs table")
    close_assistant(page)
    columns = runs_view_state()["selectedColumns"]  # metrics.`test/accuracy`, params.`epochs`, ...
    page.locator(f'[role="columnheader"][col-id="{columns[0]}"]').wait_for()
    ids = page.locator('[role="columnheader"][col-id]').evaluate_all("hs => hs.map(h => h.getAttribute('col-id'))")
    shown = {c for c in ids if c.startswith(("metrics.", "params."))}
    if shown != set(columns):
        raise AssertionError(f"columns {sorted(shown)}, expected exactly {sorted(columns)}")
    for column in columns:
        kind, key = column.split(".", 1)[0], column.split(".", 1)[1].strip("`")
        page.get_by_role("columnheader", name=key, exact=True).first.wait_for()  # headed by its own name
        for name in EXPERIMENTS:  # each cell holds the run's own value
            run = runs[name]
            text = page.locator(f'[role="row"][row-id="{run.info.run_id}"] [col-id="{column}"]').first.inner_text()
            logged = run.data.params[key] if kind == "params" else run.data.metrics[key]
            if not same_value(text, logged):
                raise AssertionError(f"run {name}: {key} shows {text!r}, logged {logged!r}")
    checks.shot("1-runs-table", "mlflow-runs.png", height=390)


def same_value(shown: str, logged: str | float) -> bool:
    """A param as logged; a metric as the UI rounds it."""
    if isinstance(logged, str):
        return shown.strip() == logged
    try:
        return math.isclose(float(shown), logged, rel_tol=1e-3, abs_tol=1e-4)
    except ValueError:
        return False


def model_training_switch(checks: Checks, url: str, experiment: str) -> None:
    """The link says workflowType=machine_learning, but MLflow forgets it on the next click; the
    switch at the top left, clicked once, is remembered by the browser (localStorage)."""
    page = checks.page
    page.goto(url)  # the experiments list, in the browser's remembered mode (GenAI until switched)
    page.get_by_text("Model training", exact=True).first.click()
    page.get_by_role("link", name=experiment, exact=True).first.click()
    for name in EXPERIMENTS:
        checks.see(name)
    if "/runs" not in page.url:
        raise AssertionError(f"after the switch, {experiment} opened {page.url}, not its runs table")


def curves(checks: Checks, runs: dict) -> None:
    """From the runs table, as a person goes: the run's name, then its Model metrics tab."""
    page = checks.page
    name = next(iter(EXPERIMENTS))
    page.get_by_role("link", name=name, exact=True).first.click()
    page.get_by_role("tab", name="Model metrics").first.click()
    sections = page.get_by_test_id("experiment-view-compare-runs-section-header")
    sections.first.wait_for()
    titles = [text.split("\n")[0].strip() for text in sections.all_inner_texts()]  # "loss\n(2)"
    if not titles or titles[0] != CURVE_SECTION:
        raise AssertionError(f"the charts' sections are {titles}; expected {CURVE_SECTION!r} first")
    expected = {metric_key(*m) for m in (("train", "loss"), ("val", "log_loss"))}
    logged = set(runs[name].data.metrics)
    if not expected <= logged:
        raise AssertionError(f"the run logged no {sorted(expected - logged)}")
    for key in sorted(expected):  # a line chart's legend names the run and the metric
        checks.see(f"{name} ({key})")
    checks.shot("3-run-curves", "mlflow-curves.png", height=625)


def compare_view(checks: Checks, link: str) -> None:
    page = checks.page
    page.goto(link)
    for name in EXPERIMENTS:  # tick both runs in the table, then Compare
        page.get_by_role("row").filter(has_text=name).get_by_role("checkbox").first.check()
    page.get_by_role("button", name="Compare").first.click()
    checks.see("Comparing 2 Runs", exact=False)
    for name in EXPERIMENTS:
        checks.see(name)
    for row in KEY_PARAMS:  # the two runs' params side by side
        page.get_by_text(row, exact=True).last.wait_for()
    checks.shot("4-compare-runs")


def model_versions(checks: Checks, url: str, client: MlflowClient, model: str) -> None:
    page = checks.page
    aliases = client.get_registered_model(model).aliases  # alias -> version: the registry holds them
    if CHAMPION not in aliases:
        raise AssertionError(f"{model} has no @{CHAMPION}: aliases {aliases}")
    page.goto(f"{url}/#/models/{model}")
    for alias, version in aliases.items():
        row = page.get_by_role("row").filter(has=page.get_by_role("link", name=f"Version {version}", exact=True))
        checks.see(f"@ {alias}", within=row)
    checks.shot("5-model-versions")
    page.goto(f"{url}/#/models/{model}/versions/{aliases[CHAMPION]}")
    for text in ("Data (digests of the tokenized splits)", "Key params", "Test metrics", "Reproduce"):
        checks.see(text, exact=False)
    checks.shot("6-model-version")


def main() -> int:
    args = parse_args()
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    os.environ.update({"no_proxy": "127.0.0.1,localhost", "NO_PROXY": "127.0.0.1,localhost"})
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    docs = Path(args.docs).resolve() if args.docs else None
    started = time.monotonic()
    if args.project:
        work, project = Path(args.project).parent, Path(args.project)
    else:
        work = Path(tempfile.mkdtemp(prefix="ui-check-"))
        project = new_project(work / "project", make_tiny_bert(work / "tiny-bert"))
    try:
        # The server starts (tens of seconds) while the pipeline runs.
        with mlflow_ui(project, out / "mlflow_ui.log") as (url, server):
            link = (project / "runs_link.txt").read_text() if args.project else run_experiments(project)
            wait_until_up(url, server, out / "mlflow_ui.log")
            log.info("pipeline and server ready in %.0fs", time.monotonic() - started)
            failures = check_ui(url, project, link, out, docs, args.chromium)
    finally:
        if args.keep or args.project:
            log.info("scratch project kept in %s", project)
        else:
            shutil.rmtree(work, ignore_errors=True)
    for failure in failures:
        log.error("FAILED: %s", failure)
    log.info("%s in %.0fs; screenshots in %s", "all checks passed" if not failures else f"{len(failures)} failed",
             time.monotonic() - started, out)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
