"""The served model under load: a real `mlflow models serve` of a checkpoint, several concurrent
clients sending requests of 1 to 32 IMDB reviews, against Classifier.predict_proba in this process
(what the served model calls) on the same requests.

The checkpoint (--model, default models/best; --quick: a tiny random BERT from tools/tiny_bert.py)
is logged as the project's MLflow model (bertpipe.tracking.log_classifier) in a scratch store and
served from there with `--env-manager local` on 127.0.0.1. Requests are real IMDB reviews from
the embedded data (bertpipe.sources.movie_reviews), their sizes drawn uniformly from 1 to 32 with
a fixed seed, each body encoded before the clock starts. After a warm-up (--warmup-s of serving,
whose rate sizes the rounds), each round hands both ways the same new requests, about --round-s
of the server's work, in turn (served first in even rounds): the served way runs --clients
threads, each with its own keep-alive connection, taking the next request until all are
answered; the in-process way calls predict_proba on each request one after another. Each round
gives one ratio of reviews/s (served / in process); the median and the spread (min-max) are
reported. Latency is per request, as a client sees it, over all rounds (p50/p95/p99). The
server's resident memory is the sum over its process tree (psutil; else VmRSS in /proc) at
start (model loaded, nothing asked), after the warm-up, after each round and at the end;
rss_growth_mb = end - after warm-up: by default a minute of warm-up, then the growth over about
a second minute of serving (8 rounds of 10 s). The served answers
are checked against the in-process probabilities (largest difference reported). Last line:
RESULT serve_reviews_per_s=<n> p99_s=<x> rss_growth_mb=<y> vs_predict_proba=<median ratio>.

Run: python bench/serve_bench.py [--model models/best] [--clients 8] [--rounds 8] [--round-s 10]
     python bench/serve_bench.py --server-workers 2   # uvicorn worker processes (mlflow models serve -w)
     python bench/serve_bench.py --quick   # a smoke test in seconds: a tiny BERT, 2 short rounds
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bertpipe.contracts import CheckpointMeta  # noqa: E402
from bertpipe.inference import Classifier  # noqa: E402
from bertpipe.logs import setup_logging  # noqa: E402
from bertpipe.modeling import cpu_has_bf16  # noqa: E402
from bertpipe.sources import movie_reviews  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("serve_bench")
MAX_REVIEWS_PER_REQUEST = 32
START_TIMEOUT_S = 300
REQUEST_TIMEOUT_S = 120
SEED = 0
# --quick: the same steps in seconds on a tiny model
QUICK = {"clients": 4, "rounds": 2, "round_s": 2.0, "warmup_s": 1.0}
LABELS = ["negative", "positive"]


def tiny_checkpoint(folder: Path) -> Path:
    """A classifier checkpoint of the tiny random BERT (2 layers of width 32, the real MiniLM tokenizer),
    length 64 head+tail: what --quick serves."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from tools.tiny_bert import make_tiny_bert

    base, out = make_tiny_bert(folder / "tiny-bert"), folder / "checkpoint"
    config = BertConfig.from_pretrained(base, num_labels=2, id2label=dict(enumerate(LABELS)),
                                        label2id={n: i for i, n in enumerate(LABELS)})
    torch.manual_seed(SEED)
    BertForSequenceClassification(config).save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    CheckpointMeta(base_model=str(base), base_model_revision="", max_length=64, truncation="head_tail",
                   head_tokens=16, pad_token_id=0, normalization={}, labels=LABELS).write(out)
    return out


def log_model(checkpoint: Path, scratch: Path) -> str:
    """The checkpoint logged as the project's MLflow model in a store in scratch; its model URI."""
    import mlflow

    from bertpipe.tracking import log_classifier

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{scratch / 'mlflow.db'}"
    examples = ["A moving film.", "Dull and far too long."]
    with contextlib.chdir(scratch):  # MLflow's ./mlruns artifacts go beside its store
        mlflow.set_experiment("serve-bench")
        with mlflow.start_run():
            info = log_classifier(checkpoint, examples, Classifier.load(checkpoint).predict_frame(examples))
    return info.model_uri


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(model_uri: str, workers: int, scratch: Path):
    """`mlflow models serve` of model_uri on 127.0.0.1, up (/ping answers); (port, server process)."""
    port, log_path = free_port(), scratch / "serve.log"
    with open(log_path, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", model_uri, "--env-manager", "local",
             "-h", "127.0.0.1", "-p", str(port), "-w", str(workers)],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not ping(port):
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"mlflow models serve did not come up (exit {server.poll()}):\n"
                                 f"{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield port, server
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)  # the server and the workers it started
        server.wait(timeout=60)


def ping(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/ping")
        return conn.getresponse().status == 200
    except OSError:
        return False


def rss_mb(pid: int) -> float:
    """Resident memory of the process and all its descendants, MB."""
    try:
        import psutil
    except ImportError:
        return _proc_rss_mb(pid)
    root = psutil.Process(pid)
    total = 0
    for p in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total / 2**20


def _proc_rss_mb(pid: int) -> float:
    """rss_mb without psutil: VmRSS (/proc/<pid>/status) of pid and of every process descending from it."""
    procs = {}  # pid -> (parent pid, VmRSS kB)
    for status in Path("/proc").glob("[0-9]*/status"):
        with contextlib.suppress(OSError):
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
            procs[int(status.parent.name)] = (int(fields["PPid"]), int(fields.get("VmRSS", "0 kB").split()[0]))
    tree, grew = {pid}, True
    while grew:
        children = {p for p, (parent, _) in procs.items() if parent in tree} - tree
        tree, grew = tree | children, bool(children)
    return sum(procs.get(p, (0, 0))[1] for p in tree) / 1024


@dataclass
class Request:
    texts: list[str]
    body: bytes = field(repr=False)  # the JSON request, encoded before the clock starts


def make_requests(reviews: list[str], n: int, rng: np.random.Generator) -> list[Request]:
    """n requests of 1 to 32 reviews each (uniform), reviews drawn with replacement."""
    out = []
    for size in rng.integers(1, MAX_REVIEWS_PER_REQUEST + 1, size=n):
        texts = [reviews[i] for i in rng.integers(0, len(reviews), size=size)]
        out.append(Request(texts, json.dumps({"dataframe_records": [{"text": t} for t in texts]}).encode()))
    return out


@dataclass
class Answers:
    """One served run: per request its latency as the client saw it and the last class's probabilities."""
    latency: dict[int, float] = field(default_factory=dict)
    probs: dict[int, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0


def serve(port: int, requests: list[Request], clients: int, key: str, duration_s: float | None = None) -> Answers:
    """clients threads, one keep-alive connection each, take the next request until all are answered
    (or, with duration_s, over and over until that has passed: the ones in flight then are finished;
    the answers are then keyed by how many were taken before). Any answer but
    200 stops the bench. key: the answer's probability column kept (prob_<last class>)."""
    taken, done, errors = itertools.count(), Answers(), []
    start = time.perf_counter()
    deadline, last = start + (duration_s or float("inf")), float("inf") if duration_s else len(requests)

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
        try:
            while time.perf_counter() < deadline and not errors and (i := next(taken)) < last:
                sent = time.perf_counter()
                conn.request("POST", "/invocations", body=requests[i % len(requests)].body,
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                answer = resp.read()
                done.latency[i] = time.perf_counter() - sent
                if resp.status != 200:
                    raise RuntimeError(f"HTTP {resp.status}: {answer[:500]!r}")
                done.probs[i] = np.array([p[key] for p in json.loads(answer)["predictions"]])
        except Exception as e:  # noqa: BLE001 (reported by the caller, which stops the bench)
            errors.append(f"{type(e).__name__}: {e}")
        finally:
            conn.close()

    threads = [threading.Thread(target=client, name=f"client-{c}") for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.seconds = time.perf_counter() - start
    if errors:
        raise SystemExit(f"a request failed: {errors[0]}")
    return done


def in_process(classifier: Classifier, requests: list[Request]) -> tuple[float, list[np.ndarray]]:
    """Seconds for predict_proba on each request in turn, and the last class's probabilities."""
    start, probs = time.perf_counter(), []
    for r in requests:
        probs.append(classifier.predict_proba(r.texts)[:, -1])
    return time.perf_counter() - start, probs


def percentile_s(latencies: list[float], q: float) -> float:
    return float(np.percentile(latencies, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "models" / "best"), help="checkpoint folder to serve")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client threads")
    parser.add_argument("--rounds", type=int, default=8, help="rounds of both ways, the order alternating")
    parser.add_argument("--round-s", type=float, default=10.0,
                        help="about how long the server takes per round (its requests sized from the warm-up's rate)")
    parser.add_argument("--warmup-s", type=float, default=60.0, help="seconds of serving before the rounds")
    parser.add_argument("--server-workers", type=int, default=1, help="uvicorn worker processes (serve -w)")
    parser.add_argument("--quick", action="store_true", help=f"a smoke test in seconds on a tiny BERT: {QUICK}")
    args = parser.parse_args()
    if args.quick:  # the quick sizes as defaults: a flag given still wins
        parser.set_defaults(**QUICK)
        args = parser.parse_args()

    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # here and in the server: no bars in the log
    reviews = movie_reviews("imdb")["text"].tolist()
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        scratch = Path(tmp)
        checkpoint = tiny_checkpoint(scratch) if args.quick else Path(args.model)
        if not (checkpoint / "config.json").exists():
            raise SystemExit(f"{checkpoint}: no checkpoint there; train one (dvc repro) or name one with --model")
        model_uri = log_model(checkpoint, scratch)
        classifier = Classifier.load(checkpoint)
        log.info("checkpoint %s served as %s: %d clients, %d server worker(s), %d torch threads here, bf16 in "
                 "hardware: %s", checkpoint, model_uri, args.clients, args.server_workers, torch.get_num_threads(),
                 cpu_has_bf16())
        with served(model_uri, args.server_workers, scratch) as (port, server):
            measure(args, port, server.pid, classifier, reviews)


def measure(args: argparse.Namespace, port: int, pid: int, classifier: Classifier, reviews: list[str]) -> None:
    rng, key = np.random.default_rng(SEED), f"prob_{classifier.label_names[-1]}"
    rss = [("start", rss_mb(pid))]
    warm = serve(port, make_requests(reviews, 64, rng), args.clients, key, args.warmup_s)
    in_process(classifier, make_requests(reviews, 8, rng))
    rss.append(("after warm-up", rss_mb(pid)))
    per_round = max(2 * args.clients, round(len(warm.latency) / warm.seconds * args.round_s))
    log.info("warm-up: %d requests in %.1fs; %d requests per round", len(warm.latency), warm.seconds, per_round)
    latencies, served_rates, request_rates, local_rates, ratios, diff = [], [], [], [], [], 0.0
    for r in range(args.rounds):
        requests = make_requests(reviews, per_round, rng)
        n_reviews = sum(len(q.texts) for q in requests)
        order = ("served", "in process") if r % 2 == 0 else ("in process", "served")
        for way in order:
            if way == "served":
                got = serve(port, requests, args.clients, key)
            else:
                local_s, local_probs = in_process(classifier, requests)
        latencies += list(got.latency.values())
        served_rates.append(n_reviews / got.seconds)
        request_rates.append(len(requests) / got.seconds)
        local_rates.append(n_reviews / local_s)
        ratios.append(served_rates[-1] / local_rates[-1])
        diff = max(diff, max(float(np.abs(got.probs[i] - p).max()) for i, p in enumerate(local_probs)))
        rss.append((f"after round {r + 1}", rss_mb(pid)))
        log.info("round %d (%s first): %d requests, %d reviews: served %.1f reviews/s (%.1fs), in process "
                 "%.1f reviews/s (%.1fs), ratio %.3f; server RSS %.0f MB", r + 1, order[0], len(requests), n_reviews,
                 served_rates[-1], got.seconds, local_rates[-1], local_s, ratios[-1], rss[-1][1])
    rss.append(("end", rss_mb(pid)))
    growth = rss[-1][1] - rss[1][1]
    print(f"{args.clients} clients, requests of 1-{MAX_REVIEWS_PER_REQUEST} reviews, {args.rounds} rounds, "
          f"{args.server_workers} server worker(s); load average at the end {os.getloadavg()[0]:.1f} "
          f"(1 min), {os.getloadavg()[2]:.1f} (15 min) on {os.cpu_count()} CPUs")
    print(f"served: {statistics.median(request_rates):.2f} requests/s, {statistics.median(served_rates):.1f} "
          f"reviews/s (median; per round {min(served_rates):.1f}-{max(served_rates):.1f})")
    print(f"in process (predict_proba per request): {statistics.median(local_rates):.1f} reviews/s (median; "
          f"per round {min(local_rates):.1f}-{max(local_rates):.1f})")
    print(f"served / in process: median {statistics.median(ratios):.3f} (spread {min(ratios):.3f}-"
          f"{max(ratios):.3f} over {args.rounds} rounds)")
    print(f"latency per request: p50 {percentile_s(latencies, 50):.3f}s, p95 {percentile_s(latencies, 95):.3f}s, "
          f"p99 {percentile_s(latencies, 99):.3f}s, max {max(latencies):.3f}s over {len(latencies)} requests")
    print("server RSS MB: " + ", ".join(f"{name} {mb:.0f}" for name, mb in rss))
    print(f"served probabilities vs in process: largest difference {diff:.2g}")
    print(f"RESULT serve_reviews_per_s={statistics.median(served_rates):.1f} p99_s={percentile_s(latencies, 99):.3f} "
          f"rss_growth_mb={growth:.1f} vs_predict_proba={statistics.median(ratios):.3f}")


if __name__ == "__main__":
    setup_logging()
    main()
