"""Meta-iteration time of this tree against another git revision, interleaved in one run.

    python scripts/interleaved_benchmark.py --against eb598e2 --config configs/cifar10.yaml

Each revision's source goes into its own worker process (the other revision's through `git
archive` into a temporary folder). A worker reads its own revision's copy of the config file,
so that each runs as it was configured, builds and compiles one meta-iteration, and then times
one call each time the driver asks. The driver asks the two workers in
turn, `--repeats` times each, so that both see the same load on a shared machine, and reports
each one's median seconds, its matmul FLOPs (as `scripts/benchmark.py` counts them) as a % of
the measured matmul peak, and the ratio of the medians. Compile time is excluded.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent


def worker(source: Path, config_path: str, overrides: list[str]) -> None:
    """Imports l2lgd from `source`, compiles a meta-iteration, then times one per input line."""
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__]
    sys.path.insert(0, str(source))
    import jax

    import l2lgd
    from l2lgd.config import load_config
    from l2lgd.meta.unroll import init_meta_state, make_meta_iteration
    from l2lgd.optimizers.learned import init_learned_weights
    from l2lgd.tasks import make_task

    if not Path(l2lgd.__file__).resolve().is_relative_to(source.resolve()):
        raise SystemExit(f"imported l2lgd from {l2lgd.__file__}, not from {source}")
    sys.path.insert(0, str(SCRIPTS))
    from benchmark import matmul_flops, matmul_peak_flops, timed_repeats

    from l2lgd.errors import L2LError

    try:
        config = load_config(source / config_path, overrides)
        task = make_task(config.task)
    except L2LError as error:  # e.g. no data folder: one line, not a worker's traceback
        raise SystemExit(f"error: {error}") from None
    if (
        "task" in inspect.signature(make_meta_iteration).parameters
    ):  # revisions before tasks were pytrees
        compiled = make_meta_iteration(task, config.optimizer, config.meta)
        task_args: tuple = ()
    else:
        compiled = make_meta_iteration(config.optimizer, config.meta)
        task_args = (task,)
    weights = init_learned_weights(jax.random.key(0), config.optimizer)
    state = {"meta": init_meta_state(weights, config.meta)}

    def run(index: int) -> None:
        state["meta"], losses = compiled(state["meta"], *task_args, jax.random.key(index))
        losses.block_until_ready()

    run(-1)  # compile
    flops = matmul_flops(compiled, state["meta"], *task_args, jax.random.key(0))
    print(json.dumps({"ready": True, "matmul_flops": flops}), flush=True)
    for line in sys.stdin:
        if line.strip() == "peak":
            print(json.dumps({"peak": matmul_peak_flops(5)["flops"]}), flush=True)
            continue
        (seconds,) = timed_repeats(run, 1)
        print(json.dumps({"seconds": seconds}), flush=True)


def revision_tree(revision: str, folder: Path) -> Path:
    """The source of `revision` (a git commit) unpacked into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    return folder


def start_worker(source: Path, args: argparse.Namespace) -> subprocess.Popen:
    command = [sys.executable, __file__, "--worker", str(source), "--config", args.config]
    for override in args.set:
        command += ["--set", override]
    return subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )


def ask(process: subprocess.Popen, request: str | None = None) -> dict:
    if request is not None:
        process.stdin.write(request + "\n")
        process.stdin.flush()
    line = process.stdout.readline()
    if not line:
        raise SystemExit(f"a worker stopped (exit code {process.wait()})")
    return json.loads(line)


def paired_ratios(other: list[float], this: list[float]) -> dict[str, float]:
    """Median and quartiles of other/this over the rounds: each round timed both under the same
    load, so its ratio is steadier on a shared machine than either time."""
    q1, median, q3 = statistics.quantiles([a / b for a, b in zip(other, this, strict=True)], n=4)
    return {"median": median, "q1": q1, "q3": q3}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--against",
        action="append",
        default=[],
        help="a git revision to compare with (repeat it to time several in one run; default HEAD)",
    )
    parser.add_argument("--config", default="configs/cifar10.yaml", help="relative to the root")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--set", action="append", default=[], help="config override")
    parser.add_argument("--out", default="runs/interleaved.json")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(Path(args.worker), args.config, args.set)
        return
    revisions = args.against or ["HEAD"]
    with tempfile.TemporaryDirectory() as folder:
        sources = {"this tree": ROOT}
        for index, revision in enumerate(revisions):
            sources[revision] = revision_tree(revision, Path(folder) / str(index))
        # One at a time: two compilations at once would only slow each other down.
        workers, flops = {}, {}
        for name, source in sources.items():
            workers[name] = start_worker(source, args)
            flops[name] = ask(workers[name])["matmul_flops"]
        peak = ask(workers["this tree"], "peak")["peak"]
        seconds = {name: [] for name in workers}
        for _ in range(args.repeats):
            for name, process in workers.items():
                seconds[name].append(ask(process, "run")["seconds"])
        for process in workers.values():
            process.stdin.close()
            process.wait()
    result = {"config": args.config, "overrides": args.set, "matmul_peak_flops": peak}
    for name in workers:
        median = statistics.median(seconds[name])
        result[name] = {
            "median_s": median,
            "seconds": seconds[name],
            "matmul_flops": flops[name],
            "percent_of_matmul_peak": 100 * flops[name] / median / peak,
        }
        print(
            f"{name}: median {median:.3f} s per meta-iteration of {args.repeats}, "
            f"{flops[name] / 1e9:.1f} GFLOP of matmuls = "
            f"{result[name]['percent_of_matmul_peak']:.1f}% of the {peak / 1e9:.0f} GFLOP/s peak"
        )
    result["speedup"], result["paired_speedup"] = {}, {}
    for revision in revisions:
        speedup = result[revision]["median_s"] / result["this tree"]["median_s"]
        paired = paired_ratios(seconds[revision], seconds["this tree"])
        result["speedup"][revision], result["paired_speedup"][revision] = speedup, paired
        print(
            f"speed-up of this tree over {revision}: {speedup:.2f}x (ratio of medians); "
            f"paired, round by round: median {paired['median']:.3f}x, "
            f"quartiles [{paired['q1']:.3f}, {paired['q3']:.3f}]"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"written: {out}")


if __name__ == "__main__":
    main()
