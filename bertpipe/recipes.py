"""Seeds as a group: the runs of each recipe in the MLflow experiment, with the mean, standard
deviation and 95% interval over seeds of test accuracy and of the gain over TF-IDF.

A recipe is the tag `recipe` train gives each run: a hash of everything that defines its result
except train.seed (bertpipe.tracking.recipe_params), so one recipe queued at several seeds,
`dvc exp run --queue -S 'train.seed=42,43,44'`, is one group. Per recipe it takes the newest
run of each seed and gives the mean, the sample standard deviation and Student's t 95% interval
of the mean over seeds (mean +- t(0.975, n - 1) sd / sqrt(n), none for one seed): how far the
recipe's result moves from seed to seed on these test rows; evaluate's bootstrap interval of
each run is the test rows' own sampling error. Beside them, the params in which the recipe
differs from the others listed. Runs without the tag (trained before train tagged recipes) or
without test metrics (not evaluated yet, or failed) are skipped and counted.

In:  the runs of experiment train.mlflow_experiment (--params; or --experiment) in the tracking
     store the stages use (MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here).
Out: a table on stdout, best mean accuracy first (accuracy in %, the gain in points); --json:
     the same as JSON, in the metrics' own units (fractions).

Run: bertpipe recipes [--experiment NAME] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from collections import Counter
from dataclasses import dataclass, field

import mlflow
from scipy.stats import t as student_t

from bertpipe.config import TrainParams
from bertpipe.errors import BertpipeError
from bertpipe.logs import run_cli
from bertpipe.metrics import CI_LEVEL
from bertpipe.params import PARAMS_FILE, load_section
from bertpipe.redact import mask_url
from bertpipe.tracking import RECIPE_PARAMS_TAG, RECIPE_TAG, configure, metric_key

# What is summarised: {name in the output: MLflow metric key}, the keys as evaluate logs them.
METRICS = {"accuracy": metric_key("test", "accuracy"),
           "gain_over_tfidf": metric_key("test", "accuracy_gain_over_baseline")}
INTERVAL = f"{CI_LEVEL:.0%} Student t interval of the mean over seeds"
SKIPPED = {"untagged": "without a recipe tag (trained before train tagged recipes)",
           "no_test_metrics": "without test metrics (not evaluated yet, or failed)",
           "older_run_of_a_seed": "older runs of a seed the recipe has a newer run of"}
DIGEST_CHARS = 12  # a row-set digest shown in the table


class NoExperiment(BertpipeError):
    """The experiment is not in the tracking store."""


@dataclass
class Recipe:
    recipe: str
    params: dict | None  # the recipe_params tag, parsed; None when the run has none
    runs: dict[str, mlflow.entities.Run] = field(default_factory=dict)  # seed -> its newest run
    differs: dict = field(default_factory=dict)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default=PARAMS_FILE, help="params file naming the experiment (train.mlflow_experiment)")
    p.add_argument("--experiment", help="the MLflow experiment to read (default: train.mlflow_experiment)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    return p.parse_args(argv)


def summary(values: list[float]) -> dict[str, float | int | None]:
    """n, mean, sample standard deviation and the t interval of the mean (None below two values)."""
    n = len(values)
    out: dict[str, float | int | None] = {"n": n, "mean": statistics.fmean(values) if values else None,
                                          "sd": None, "ci_low": None, "ci_high": None}
    if n >= 2:
        sd = statistics.stdev(values)
        half = float(student_t.ppf((1 + CI_LEVEL) / 2, n - 1)) * sd / math.sqrt(n)
        out.update(sd=sd, ci_low=out["mean"] - half, ci_high=out["mean"] + half)
    return out


def group(runs: list) -> tuple[list[Recipe], Counter]:
    """The recipes of runs (newest run first), each with the newest run of each seed; the skipped counts."""
    recipes: dict[str, Recipe] = {}
    skipped = Counter(dict.fromkeys(SKIPPED, 0))
    for run in runs:
        tag = run.data.tags.get(RECIPE_TAG)
        if tag is None:
            skipped["untagged"] += 1
            continue
        if METRICS["accuracy"] not in run.data.metrics:
            skipped["no_test_metrics"] += 1
            continue
        recipe = recipes.setdefault(tag, Recipe(tag, parsed_params(run)))
        seed = run.data.params.get("seed", "?")
        if seed in recipe.runs:
            skipped["older_run_of_a_seed"] += 1
        else:
            recipe.runs[seed] = run
    found = list(recipes.values())
    mark_differences(found)
    return found, skipped


def parsed_params(run) -> dict | None:
    try:
        return json.loads(run.data.tags[RECIPE_PARAMS_TAG])
    except (KeyError, ValueError):
        return None


def mark_differences(recipes: list[Recipe]) -> None:
    """Each recipe's params whose value is not the same in every recipe listed."""
    known = [r for r in recipes if r.params is not None]
    keys = sorted({k for r in known for k in r.params})
    varying = [k for k in keys if len({json.dumps(r.params.get(k)) for r in known}) > 1]
    for r in known:
        r.differs = {k: r.params.get(k) for k in varying}


def seed_order(seed: str) -> tuple:
    return (0, int(seed), "") if seed.lstrip("-").isdigit() else (1, 0, seed)


def recipe_summary(recipe: Recipe) -> dict:
    seeds = sorted(recipe.runs, key=seed_order)
    out = {"recipe": recipe.recipe, "seeds": seeds, "run_ids": [recipe.runs[s].info.run_id for s in seeds],
           "run_names": [recipe.runs[s].info.run_name for s in seeds]}
    for name, key in METRICS.items():
        out[name] = summary([recipe.runs[s].data.metrics[key] for s in seeds if key in recipe.runs[s].data.metrics])
    out["differs"] = recipe.differs
    out["params"] = recipe.params
    return out


def read_runs(experiment: str) -> list:
    """Every live run of the experiment, newest first."""
    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        raise NoExperiment(f"no MLflow experiment '{experiment}' in {mask_url(mlflow.get_tracking_uri())}: "
                           "train creates it with its first run (dvc repro); or set MLFLOW_TRACKING_URI to the "
                           "store that holds it, or name another with --experiment")
    return mlflow.search_runs(experiment_ids=[found.experiment_id], output_format="list",
                              order_by=["attributes.start_time DESC"])


def shown(value) -> str:
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:DIGEST_CHARS]  # a row-set digest
    return value if isinstance(value, str) else json.dumps(value)


def cells(s: dict, scale: float, sign: str) -> list[str]:
    def number(x: float | None, fmt: str = sign) -> str:
        return "-" if x is None else f"{x * scale:{fmt}.2f}"
    interval = "-" if s["ci_low"] is None else f"{number(s['ci_low'])} to {number(s['ci_high'])}"
    return [number(s["mean"]), number(s["sd"], ""), interval]


def table(report: dict) -> str:
    skipped = ", ".join(f"{n} {SKIPPED[k]}" for k, n in report["skipped"].items() if n) or "none"
    head = [f"experiment '{report['experiment']}' in {report['tracking_uri']}: {len(report['recipes'])} recipes",
            f"skipped runs: {skipped}.",
            f"per recipe, over its seeds (the newest run of each): mean, standard deviation, {INTERVAL}.", ""]
    header = ["recipe", "seeds", "accuracy %", "sd", "95% interval", "gain over TF-IDF, points", "sd", "95% interval",
              "differs from the others"]
    rows = [[r["recipe"], ",".join(r["seeds"]), *cells(r["accuracy"], 100, ""),
             *cells(r["gain_over_tfidf"], 100, "+"),
             ", ".join(f"{k}={shown(v)}" for k, v in r["differs"].items()) or "-"] for r in report["recipes"]]
    if not rows:
        return "\n".join(head[:-1] + ["No recipe has a run with test metrics yet: dvc repro, or dvc exp run."])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i in (0, 1, len(header) - 1) else c.rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip() for row in [header, *rows]]
    return "\n".join(head + lines)


def report(experiment: str) -> dict:
    recipes, skipped = group(read_runs(experiment))
    summaries = sorted((recipe_summary(r) for r in recipes), key=lambda s: -(s["accuracy"]["mean"] or 0.0))
    return {"experiment": experiment, "tracking_uri": mask_url(mlflow.get_tracking_uri()), "interval": INTERVAL,
            "skipped": dict(skipped), "recipes": summaries}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    experiment = args.experiment or load_section(TrainParams, "train", args.params).mlflow_experiment
    configure()
    found = report(experiment)
    print(json.dumps(found, indent=2) if args.json else table(found))


if __name__ == "__main__":
    run_cli(main)
