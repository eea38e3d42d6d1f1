"""bench/: every benchmark's --quick mode runs its code end to end in seconds and prints its
figures. Each script runs as a user runs it (`python bench/<name>.py --quick ...`, a process of
its own), with the tiny BERT wherever a model is trained, and its RESULT ratios must parse as
positive numbers.

The runs go two at a time (the `runs` fixture): most of each is single-threaded start-up
(importing torch, transformers and MLflow), so two cores nearly halve the module's time. Only
what CI installs (`.[test,hf]`) is needed: the commands leave out the ways of the bench extra
(the Trainer, ONNX Runtime)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

pytestmark = pytest.mark.slow
TIMEOUT_S = 600
# Two at a time: most of a run is single-threaded start-up, and more at once on two cores only
# makes torch's and the tokenizer's threads wait on each other.
RUNNING_AT_ONCE = 2


# train_bench as CI runs it, without accelerate (the bench extra), even where it is installed.
WITHOUT_ACCELERATE = ("import runpy, sys; sys.modules['accelerate'] = None; sys.argv = sys.argv[1:]; "
                      "runpy.run_path(sys.argv[0], run_name='__main__')")


def bench(name: str) -> str:
    return str(ROOT / "bench" / f"{name}.py")


def commands(tmp: Path, tiny_bert: Path) -> dict[str, list[str]]:
    """The interpreter's arguments for each run, the slowest first. The trainer way needs accelerate,
    the bench extra, which CI does not install: the quick run of train_bench leaves it out."""
    return {
        # No checkpoint at --model: the bench fine-tunes one from the tiny BERT with the stages first.
        "predict_bench": [bench("predict_bench"), "--quick", "--model", str(tmp / "no-checkpoint"),
                          "--base-model", str(tiny_bert), "--scratch", str(tmp / "predict")],
        "serve_bench": [bench("serve_bench"), "--quick"],  # starts a real `mlflow models serve`
        "train_bench": [bench("train_bench"), "--quick", "--model", str(tiny_bert), "--ways", "ours,tutorial"],
        "scale_bench": [bench("scale_bench"), "--quick", "--workdir", str(tmp / "scale")],
        "recipe_search": [bench("recipe_search"), "--quick", "--model", str(tiny_bert)],
        "tokenize_bench": [bench("tokenize_bench"), "--quick"],
        "small_data": [bench("small_data"), "--quick", "--model", str(tiny_bert), "--workdir", str(tmp / "small"),
                       "--train", "learning_rate=0.001"],
        "hostile_text_bench": [bench("hostile_text_bench"), "--quick"],
        "trainer_way_without_accelerate": ["-c", WITHOUT_ACCELERATE, bench("train_bench"), "--quick"],
    }


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    """The folder the quick runs run in and write to."""
    return tmp_path_factory.mktemp("bench")


@pytest.fixture(scope="module")
def runs(request, tmp, tiny_bert):
    """name -> a function that waits for that run (commands) and returns it. The runs the selected
    tests need (test_<name>_... needs run <name>) go RUNNING_AT_ONCE at a time, in tmp, not the
    repo, with no MLflow store or DVC experiment of the caller's."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "DVC_EXP_NAME")}
    tests = [item.name for item in request.session.items if item.module is request.module]

    def run(args: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, *args], cwd=tmp, env=env, capture_output=True, text=True,
                              timeout=TIMEOUT_S, check=False)

    def finish(name: str) -> subprocess.CompletedProcess:
        assert name in futures, f"run {name} was not started: its test's name starts test_{name}_"
        return futures[name].result()

    with ThreadPoolExecutor(RUNNING_AT_ONCE) as pool:
        futures = {name: pool.submit(run, args) for name, args in commands(tmp, tiny_bert).items()
                   if any(test.startswith(f"test_{name}_") for test in tests)}
        yield finish


def succeeded(done: subprocess.CompletedProcess) -> tuple[str, str]:
    """stdout and stderr of a run that exited 0."""
    assert done.returncode == 0, (f"{' '.join(done.args[1:])} exited {done.returncode}:\n"
                                  f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout, done.stderr


def result(stdout: str) -> dict[str, str]:
    """The key=value pairs of the RESULT line that ends the output."""
    lines = stdout.strip().splitlines()
    assert lines and lines[-1].startswith("RESULT "), f"no RESULT last line:\n{stdout[-2000:]}"
    return dict(pair.split("=", 1) for pair in lines[-1].split()[1:])


def positive(value: str) -> float:
    number = float(value)
    assert number > 0 and math.isfinite(number), value
    return number


def test_tokenize_bench_quick(runs):
    stdout, stderr = succeeded(runs("tokenize_bench"))
    assert set(result(stdout)) == {"tokenize_speedup"}
    positive(result(stdout)["tokenize_speedup"])
    assert "200 reviews, fastest of 2: tutorial loop" in stderr


def test_hostile_text_bench_quick(runs):
    stdout, _ = succeeded(runs("hostile_text_bench"))
    results = dict(pair.split("=", 1) for line in stdout.splitlines() if line.startswith("RESULT ")
                   for pair in line.split()[1:])
    assert set(results) == {"normalize_4x_growth_cr", "normalize_4x_growth_emspace", "encode_10mb_vs_long_review",
                            "encode_10mb_no_whitespace_vs_long_review", "predict_10mb_vs_long_review",
                            "peak_growth_mb_10mb"}
    assert 0 <= float(results.pop("peak_growth_mb_10mb")) < 50  # MB a 10 MB text adds: 0 when all is reused
    for value in results.values():
        positive(value)
    for kind in ("spaces", "one word", "base64", "dotted"):  # the tokenizer sees a budget, not 10 MB
        (given,) = re.findall(rf"^10 MB {kind}: the tokenizer is given ([\d,]+) characters", stdout, re.M)
        assert int(given.replace(",", "")) < 40_000, stdout
    # The former regex against normalize at the shrunk sizes: one line per character and size.
    ratios = re.findall(r"^'(?:\\r|\\u2003)' x +(\d+): former [\d.]+s, now [\d.]+ms, ratio (\d+) ", stdout, re.M)
    assert [int(n) for n, _ in ratios] == [1000, 4000, 1000, 4000], stdout
    for _, ratio in ratios:
        positive(ratio)


def test_scale_bench_quick(runs, tmp):
    stdout, _ = succeeded(runs("scale_bench"))
    results = result(stdout)
    assert set(results) == {"rows_per_s_1m", "peak_rss_gb_1m", "scaling"}
    for value in results.values():
        positive(value)
    for rows in (500, 1000):
        line = next(line for line in stdout.splitlines() if line.startswith(f"{rows} rows: "))
        rates = re.findall(r"(ingest|split|tokenize) (\d+) rows/s ([\d.]+) GB", line)
        assert [stage for stage, _, _ in rates] == ["ingest", "split", "tokenize"], line
        for _, rate, gb in rates:
            positive(rate)
            positive(gb)
        assert (tmp / "scale" / f"rows-{rows}" / "tokenized" / "train.safetensors").exists()


def test_train_bench_quick(runs):
    stdout, stderr = succeeded(runs("train_bench"))
    assert set(result(stdout)) == {"speedup_vs_tutorial"}
    positive(result(stdout)["speedup_vs_tutorial"])
    for way in ("ours", "tutorial"):  # both ways trained in both rounds
        assert f"round 2/2 {way}" in stderr


def test_predict_bench_quick_fine_tunes_a_checkpoint_and_times_it(runs, tmp):
    stdout, stderr = succeeded(runs("predict_bench"))
    results = result(stdout)
    assert set(results) == {"predict_speedup_vs_pipeline", "agreement"}
    positive(results["predict_speedup_vs_pipeline"])
    assert 0 <= float(results["agreement"]) <= 1
    assert re.search(r"^speedup median [\d.]+ \(spread [\d.]+-[\d.]+ over 2 rounds\)$", stdout, re.M), stdout
    assert "fine-tuning a small one" in stderr and "32 test reviews" in stderr
    # The train stage ran with every output it requires (--split, --details: once missing here).
    assert (tmp / "predict" / "best" / "config.json").exists() and (tmp / "predict" / "train_details.json").exists()
    assert not (tmp / "mlruns").exists()  # MLflow's artifacts went beside its store in the scratch folder
    for way in ("ours", "pipeline_bs1", "pipeline_bs8", "pipeline_bs32"):
        (time_vs_ours,) = re.findall(rf"INFO predict_bench: {way} +[\d.]+ reviews/s .* median ([\d.]+)", stderr)
        positive(time_vs_ours)


def test_serve_bench_quick_serves_concurrent_clients_and_compares_in_process(runs):
    stdout, stderr = succeeded(runs("serve_bench"))
    results = result(stdout)
    assert set(results) == {"serve_reviews_per_s", "p99_s", "rss_growth_mb", "vs_predict_proba"}
    for name in ("serve_reviews_per_s", "p99_s", "vs_predict_proba"):
        positive(results[name])
    assert abs(float(results["rss_growth_mb"])) < 1000
    (rss,) = re.findall(r"^server RSS MB: (.*)$", stdout, re.M)
    assert [name for name, _ in re.findall(r"([a-z -]+[a-z\d]) (\d+)(?:, |$)", rss)] == [
        "start", "after warm-up", "after round 1", "after round 2", "end"], rss
    # The served answers are the in-process ones: the same model, code and thread settings.
    (diff,) = re.findall(r"^served probabilities vs in process: largest difference (\S+)$", stdout, re.M)
    assert float(diff) < 1e-6, stdout
    for r, first in ((1, "served"), (2, "in process")):  # both ways in each round, the order alternating
        assert re.search(rf"round {r} \({first} first\): \d+ requests, \d+ reviews: served [\d.]+ reviews/s",
                         stderr), stderr[-3000:]


def test_recipe_search_quick_packs_and_runs_two_recipes(runs):
    stdout, _ = succeeded(runs("recipe_search"))
    lines = stdout.strip().splitlines()
    assert lines[0].split() == ["recipe", "runs", "mean", "test", "accuracy", "per", "seed"]
    table = {line.split()[0]: line.split()[1:] for line in lines[1:-1]}
    assert set(table) == {"32x1@5e-5", "64x1@5e-5"}
    for runs_, mean, seed42 in table.values():
        assert runs_ == "1" and 0 <= float(mean.rstrip("%")) <= 100 and mean.rstrip("%") == seed42
    results = result(stdout)
    assert results["best_recipe"] in table and 0 <= float(results["mean_test_accuracy"]) <= 1


def test_trainer_way_without_accelerate_names_the_extra_before_starting(runs):
    done = runs("trainer_way_without_accelerate")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert ('--ways trainer: the Hugging Face Trainer needs accelerate, which is not installed; '
            'pip install -e ".[bench]" adds it, or leave the trainer out: --ways ours,tutorial') in done.stderr


def test_small_data_quick_runs_each_recipe_and_the_probe_on_both_data_sets(runs, tmp):
    stdout, _ = succeeded(runs("small_data"))
    results = result(stdout)
    for name in ("generated", "rotten_tomatoes"):
        for recipe in ("before", "defaults", "finetune", "frozen", "probe", "tfidf", "majority"):
            assert 0 <= float(results[f"{name}_{recipe}_f1_macro"]) <= 1, results
        written = yaml.safe_load((tmp / "small" / name / "defaults-42.yaml").read_text())["train"]
        assert written["learning_rate"] == 0.001 and written["seed"] == 42  # --train reached the recipe's params
        assert written["class_weights"] == "auto"  # and left the defaults' other values as they are
    assert (tmp / "small" / "mlruns").is_dir() and not (tmp / "mlruns").exists()  # artifacts beside the store
    table = [line.split() for line in stdout.splitlines() if line.startswith(("generated ", "rotten_tomatoes "))]
    recipes = ("before", "defaults", "finetune", "frozen", "probe")
    assert sorted((row[0], row[1]) for row in table) == sorted(
        (n, r) for n in ("generated", "rotten_tomatoes") for r in recipes)
    # A rare class of a dozen training rows: the defaults (train.encoder auto) run no fine-tuning step.
    assert {row[3] for row in table if row[1] in ("defaults", "frozen")} == {"0"}
    assert {row[3] for row in table if row[1] == "finetune"} != {"0"}
