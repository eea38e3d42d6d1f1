"""Seeds as a group: the `recipe` tag (bertpipe.tracking) is the same for runs that differ only
in train.seed and different for any other change, and `bertpipe recipes` (bertpipe/recipes.py)
summarises a real sqlite store's runs, logged with the project's own logging functions."""

from __future__ import annotations

import json
import statistics
import uuid

import mlflow
import pytest
from scipy.stats import t as student_t

from bertpipe import recipes, tracking
from bertpipe.config import TrainParams
from bertpipe.params import load_section
from bertpipe.tracking import recipe_params, recipe_tags
from tests.conftest import ROOT, write_params

TOKENIZED = {"model": "embedded:minilm-l6", "model_revision": "", "max_length": 256, "truncation": "head_tail",
             "head_tokens": 64, "pad_token_id": 0, "labels": ["negative", "positive"],
             "normalization": {"html_breaks": True, "html_entities": True, "whitespace": True, "unicode_nfc": True}}
ROWS = {"train": "a" * 64, "val": "b" * 64, "test": "c" * 64}


def default_train() -> TrainParams:
    return load_section(TrainParams, "train", ROOT / "params.yaml")


def tag(train: TrainParams | dict, tokenized: dict = TOKENIZED, rows: dict = ROWS, world_size: int = 1) -> str:
    values = train.model_dump() if isinstance(train, TrainParams) else train
    return recipe_tags(recipe_params(values, tokenized, rows, world_size))[tracking.RECIPE_TAG]


def changed(value):
    """Another value of the same type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value * 2 + 1
    if isinstance(value, str):
        return value + "-other"
    if isinstance(value, list | tuple):
        return [*value, "other"]
    if isinstance(value, dict):
        return {**value, "other": True}
    raise TypeError(value)


def test_the_seed_alone_keeps_the_recipe():
    train = default_train()
    assert tag(train.model_copy(update={"seed": 43})) == tag(train) == tag(train.model_copy(update={"seed": -7}))
    params = recipe_params(train.model_dump(), TOKENIZED, ROWS, 1)
    assert "train.seed" not in params and params["train.learning_rate"] == train.learning_rate
    assert params["tokenized.normalization.html_breaks"] is True and params["rows.test"] == ROWS["test"]


@pytest.mark.parametrize("key", [k for k in TrainParams.model_fields if k not in tracking.SEED_PARAMS])
def test_every_other_train_param_changes_the_recipe(key):
    train = default_train().model_dump()
    assert tag({**train, key: changed(train[key])}) != tag(train)


@pytest.mark.parametrize("key", [*TOKENIZED, *(f"rows.{s}" for s in ROWS), "world_size"])
def test_what_tokenize_made_the_rows_and_the_processes_change_the_recipe(key):
    train = default_train().model_dump()
    if key == "world_size":
        other = tag(train, world_size=2)
    elif key.startswith("rows."):
        other = tag(train, rows={**ROWS, key.split(".")[1]: "d" * 64})
    else:
        other = tag(train, tokenized={**TOKENIZED, key: changed(TOKENIZED[key])})
    assert other != tag(train)


def test_the_recipe_is_of_the_typed_values_not_their_spelling(tmp_path):
    # YAML 1.2 floats in any spelling, an int for a float field: the same typed params, one tag.
    spellings = [{"learning_rate": 0.00008, "epochs": 1.0}, {"learning_rate": "8.0e-5", "epochs": 1}]
    tags = set()
    for i, values in enumerate(spellings):
        path = write_params(tmp_path / f"params{i}.yaml", train=values)
        text = path.read_text().replace("'8.0e-5'", "8.0e-5")  # a YAML float, not a string
        path.write_text(text)
        tags.add(tag(load_section(TrainParams, "train", path)))
    assert len(tags) == 1


def test_the_recipe_hash_is_fixed():
    # The canonical JSON (sorted keys, no spaces, shortest float repr) and its sha256: the same
    # text and tag on any machine and Python; a change here regroups every stored run.
    params = {"train.learning_rate": 8e-05, "train.epochs": 1.0, "tokenized.labels": ["négatif", "positive"],
              "run.world_size": 1}
    tags = recipe_tags(params)
    assert tags[tracking.RECIPE_PARAMS_TAG] == ('{"run.world_size":1,"tokenized.labels":["négatif","positive"],'
                                                '"train.epochs":1.0,"train.learning_rate":8e-05}')
    assert tags[tracking.RECIPE_TAG] == "cb3b377412fc"  # printf %s <that text> | sha256sum


def test_recipe_params_too_long_for_a_tag_are_left_out(caplog):
    params = recipe_params(default_train().model_dump(), {**TOKENIZED, "labels": [f"class {i}" for i in range(900)]},
                           ROWS, 1)
    tags = recipe_tags(params)
    assert set(tags) == {tracking.RECIPE_TAG} and len(tags[tracking.RECIPE_TAG]) == tracking.RECIPE_CHARS
    assert "over MLflow's 5000 for a tag" in caplog.text


# --- bertpipe recipes on a real store ---------------------------------------------------------------

A_RUNS = {"42": (0.880, 0.010), "43": (0.890, 0.020), "44": (0.872, -0.004)}  # seed: (accuracy, gain)


def log_run(experiment_id: str, start_ms: int, train: dict, metrics: dict | None, tagged: bool = True) -> str:
    """One run as train and evaluate log it: params, the recipe tags, the test metrics."""
    client = mlflow.MlflowClient()
    run_id = client.create_run(experiment_id, start_time=start_ms).info.run_id
    with mlflow.start_run(run_id=run_id):
        tracking.log_params(train)
        if tagged:
            mlflow.set_tags(recipe_tags(recipe_params(train, TOKENIZED, ROWS, 1)))
        if metrics:
            tracking.log_metrics("test", metrics)
    return run_id


@pytest.fixture(scope="module")
def experiment(store) -> str:
    """Recipe A at seeds 42, 43, 44 (and an older run of 42), recipe B (another learning rate) at
    seed 42, an untagged run and a run without test metrics."""
    name = f"recipes-{uuid.uuid4().hex[:8]}"
    experiment_id = mlflow.create_experiment(name)
    a = default_train().model_dump()
    b = {**a, "learning_rate": 2e-5}
    t = 1_700_000_000_000
    log_run(experiment_id, t, {**a, "seed": 42}, {"accuracy": 0.5, "accuracy_gain_over_baseline": -0.3})
    for i, (seed, (accuracy, gain)) in enumerate(A_RUNS.items()):
        log_run(experiment_id, t + 1000 * (i + 1), {**a, "seed": int(seed)},
                {"accuracy": accuracy, "accuracy_gain_over_baseline": gain})
    log_run(experiment_id, t + 5000, {**b, "seed": 42}, {"accuracy": 0.86, "accuracy_gain_over_baseline": -0.01})
    log_run(experiment_id, t + 6000, {**a, "seed": 45}, {"accuracy": 0.9, "accuracy_gain_over_baseline": 0.0},
            tagged=False)
    log_run(experiment_id, t + 7000, {**a, "seed": 46}, None)
    return name


def test_recipes_summarises_each_recipe_over_its_seeds(experiment, capsys):
    recipes.main(["--experiment", experiment, "--json"])
    report = json.loads(capsys.readouterr().out)
    assert report["skipped"] == {"untagged": 1, "no_test_metrics": 1, "older_run_of_a_seed": 1}
    a, b = report["recipes"]  # best mean accuracy first
    assert a["seeds"] == ["42", "43", "44"] and b["seeds"] == ["42"]
    accuracies = [v[0] for v in A_RUNS.values()]  # the newest run of seed 42, not the older one
    half = student_t.ppf(0.975, 2) * statistics.stdev(accuracies) / 3 ** 0.5
    assert a["accuracy"] == pytest.approx({"n": 3, "mean": statistics.fmean(accuracies),
                                           "sd": statistics.stdev(accuracies),
                                           "ci_low": statistics.fmean(accuracies) - half,
                                           "ci_high": statistics.fmean(accuracies) + half})
    assert a["gain_over_tfidf"]["mean"] == pytest.approx(statistics.fmean(v[1] for v in A_RUNS.values()))
    assert b["accuracy"] == {"n": 1, "mean": 0.86, "sd": None, "ci_low": None, "ci_high": None}
    assert a["differs"] == {"train.learning_rate": 8e-05} and b["differs"] == {"train.learning_rate": 2e-05}
    assert a["recipe"] == tag(default_train())


def test_recipes_table_is_readable(experiment, capsys):
    recipes.main(["--experiment", experiment])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"experiment '{experiment}' in sqlite:///") and lines[0].endswith(": 2 recipes")
    assert lines[1] == ("skipped runs: 1 without a recipe tag (trained before train tagged recipes), 1 without "
                        "test metrics (not evaluated yet, or failed), 1 older runs of a seed the recipe has a newer "
                        "run of.")
    header, a, b = lines[4:]
    assert header.split("  ")[0] == "recipe" and "95% interval" in header
    mean = statistics.fmean(v[0] for v in A_RUNS.values()) * 100
    assert a.split()[:3] == [tag(default_train()), "42,43,44", f"{mean:.2f}"]
    assert a.endswith("train.learning_rate=8e-05") and " to " in a
    assert b.split()[1:6] == ["42", "86.00", "-", "-", "-1.00"] and b.endswith("train.learning_rate=2e-05")


def test_recipes_of_an_unknown_experiment_says_where_it_looked(store):
    with pytest.raises(recipes.NoExperiment, match=r"no MLflow experiment 'nowhere' in sqlite:///.*--experiment"):
        recipes.main(["--experiment", "nowhere"])
