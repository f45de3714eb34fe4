"""Faults injected for real: signals to a running `l2l`, two processes on one run, bytes flipped in
files, existing and unwritable outputs. Each ends in one line, a known exit code, files intact.

(Corrupt training states, kills between the metrics and the state, and a run that never improves
are tested at the library level in test_integrity.py.)
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_OVERRIDES
from typer.testing import CliRunner

from l2lgd import runs
from l2lgd.cli import app
from l2lgd.locks import LOCK_FILE

pytestmark = pytest.mark.usefixtures("compilation_cache")

TINY_SETS = [arg for override in TINY_OVERRIDES for arg in ("--set", override)]
LONG_EVALUATION = ["--set", "eval.num_problems=1000", "--set", "eval.num_steps=1000000"]
STOP_WITHIN_S = 5.0
"""A couple of seconds: about 0.1 s measured on an idle machine; the rest is room for a loaded CI."""


def l2l(*args: str | Path):
    """Runs `l2l ARGS` in this process; the result has exit_code, stdout and stderr."""
    return CliRunner().invoke(app, [str(arg) for arg in args])


def signal_dispositions(sigint: str) -> tuple[str, ...]:
    """A command prefix that sets SIGINT to `sigint` (SIG_DFL or SIG_IGN) and SIGTERM to its
    default, then execs the rest of its arguments. Run as a background job, the tests' children
    would otherwise inherit an ignored SIGINT; a preexec_fn could set it too, but would run Python
    in a fork of the multithreaded test process."""
    code = (
        "import os, signal, sys\n"
        f"signal.signal(signal.SIGINT, signal.{sigint})\n"
        "signal.signal(signal.SIGTERM, signal.SIG_DFL)\n"
        "os.execv(sys.argv[1], sys.argv[1:])"
    )
    return (sys.executable, "-c", code)


def start(
    *args: str | Path, prefix: tuple[str, ...] = (), sigint: str = "SIG_DFL"
) -> subprocess.Popen:
    """Starts `l2l ARGS` as a real process (optionally behind a command prefix), by default as a
    shell starts a foreground command: SIGINT and SIGTERM at their defaults."""
    command = [*prefix, *signal_dispositions(sigint), sys.executable, "-m", "l2lgd"]
    return subprocess.Popen(
        [*command, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def finish(process: subprocess.Popen, timeout: float = 120) -> tuple[int, str]:
    """Waits for a process; its exit code and stderr."""
    _, stderr = process.communicate(timeout=timeout)
    return process.returncode, stderr


def assert_one_line_error(code: int, stderr: str, *fragments: str) -> None:
    """Exit code 2 and exactly one line on stderr, naming every fragment."""
    lines = stderr.strip().splitlines()
    assert code == 2, stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_user_error(result, *fragments: str) -> None:
    assert_one_line_error(result.exit_code, result.stderr, *fragments)


def wait_for(condition, timeout: float = 120.0) -> None:
    """Polls until `condition()` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.2)


def stop_and_time(process: subprocess.Popen, number: int) -> tuple[int, str, float]:
    """Sends signal `number`; the exit code, stderr and seconds until the process ended."""
    sent = time.monotonic()
    process.send_signal(number)
    code, stderr = finish(process)
    return code, stderr, time.monotonic() - sent


def assert_stops_at_once(process: subprocess.Popen, number: int, code: int, out: Path) -> None:
    """Signal `number` ends `process` within STOP_WITHIN_S with exit `code` and one closing line
    naming the signal, no traceback, and no output folder `out` (nothing half-written)."""
    exit_code, stderr, seconds = stop_and_time(process, number)
    assert exit_code == code, stderr
    assert stderr.strip().splitlines()[-1] == f"interrupted ({signal.Signals(number).name})"
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert seconds < STOP_WITHIN_S
    assert not out.exists()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A finished tiny meta-training run, evaluated (RUN/eval exists)."""
    run_dir = tmp_path_factory.mktemp("faults") / "run"
    result = l2l("meta-train", *TINY_SETS, "--out", run_dir)
    assert result.exit_code == 0, result.output
    return run_dir


def copy_run(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    return copy


# --- Interrupts (rows 1, 2) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "number", "code"),
    [
        (["evaluate", "--optimizer", "quadratic"], signal.SIGINT, 130),
        (["compare", "--learned", "quadratic", "--baselines", "adam"], signal.SIGINT, 130),
        (["compare", "--learned", "quadratic", "--baselines", "adam"], signal.SIGTERM, 143),
    ],
    ids=["evaluate-SIGINT", "compare-SIGINT", "compare-SIGTERM"],
)
def test_a_signal_stops_a_long_computation_at_once_and_leaves_no_output(
    tmp_path, command, number, code
):
    out = tmp_path / "out"
    process = start(*command, *LONG_EVALUATION, "--out", out)
    time.sleep(8)  # past start-up, inside one long compiled computation
    assert process.poll() is None, finish(process)[1]

    assert_stops_at_once(process, number, code, out)


@pytest.mark.parametrize("delay_s", [0.4, 1.2, 2.5])
def test_a_ctrl_c_during_start_up_stops_the_command_at_once(tmp_path, delay_s):
    # While JAX was being imported, a KeyboardInterrupt could be swallowed in one of its callbacks
    # ("Exception ignored") and the command ran on, here for ever (measured at 1 s and 2 s).
    out = tmp_path / "out"
    process = start("evaluate", "--optimizer", "quadratic", *LONG_EVALUATION, "--out", out)
    time.sleep(delay_s)

    assert_stops_at_once(process, signal.SIGINT, 130, out)


def test_a_background_job_that_ignores_sigint_keeps_ignoring_it_and_stops_on_sigterm(tmp_path):
    # A shell starts a background job with SIGINT ignored, so that a Ctrl-C at the terminal
    # leaves it running; l2l must not undo that when it sets its own handlers.
    out = tmp_path / "out"
    process = start(
        "evaluate", "--optimizer", "quadratic", *LONG_EVALUATION, "--out", out, sigint="SIG_IGN"
    )
    time.sleep(8)  # past start-up, inside one long compiled computation
    process.send_signal(signal.SIGINT)
    time.sleep(2)
    assert process.poll() is None, finish(process)[1]

    assert_stops_at_once(process, signal.SIGTERM, 143, out)


# --- One writer per run (rows 11, 12) and the resume hint -------------------------------------


def test_a_second_writer_is_refused_and_ctrl_c_names_the_resume_command(tmp_path):
    run_dir = tmp_path / "run"
    long_run = [*TINY_SETS, "--set", "meta.iterations=1000000", "--set", "meta.validate_every=5"]
    first = start("meta-train", *long_run, "--out", run_dir, "--no-evaluate")
    wait_for(lambda: len(runs.read_metrics(run_dir)) >= 10)

    second = start("meta-train", "--out", run_dir, "--resume")
    code, stderr = finish(second)
    assert_one_line_error(code, stderr, str(run_dir), f"pid {first.pid}")
    forced = start("meta-train", *TINY_SETS, "--out", run_dir, "--force")
    code, stderr = finish(forced)
    assert_one_line_error(code, stderr, f"pid {first.pid}")
    assert runs.training_state_path(run_dir).is_file()  # --force deleted nothing

    code, stderr, seconds = stop_and_time(first, signal.SIGINT)
    assert code == 130, stderr
    last_line = stderr.strip().splitlines()[-1]
    assert last_line.startswith("interrupted (SIGINT)")
    assert f"l2l meta-train --task quadratic --out {run_dir} --resume" in last_line
    assert seconds < STOP_WITHIN_S
    iterations = [record["iteration"] for record in runs.read_metrics(run_dir)]
    assert iterations == sorted(set(iterations))  # one writer: no duplicates, in order


# --- Integrity (rows 3, 4) ---------------------------------------------------------------------


def write_random_bytes(path: Path, count: int, seed: int) -> None:
    """Overwrites `count` bytes in the middle of a file with random ones."""
    data = bytearray(path.read_bytes())
    start_at = len(data) // 2
    data[start_at : start_at + count] = np.random.default_rng(seed).bytes(count)
    path.write_bytes(bytes(data))


def test_random_bytes_in_a_weights_file_are_one_line_naming_it(tiny_run, tmp_path):
    weights = tmp_path / "weights.msgpack"
    shutil.copy(runs.best_weights_path(tiny_run), weights)
    write_random_bytes(weights, 64, seed=4)

    result = l2l("evaluate", "--optimizer", weights, "--out", tmp_path / "eval")

    assert_user_error(result, str(weights), "checksum")
    assert not (tmp_path / "eval").exists()


def test_resume_from_a_corrupt_training_state_falls_back_and_says_so(tiny_run, tmp_path):
    run_dir = copy_run(tiny_run, tmp_path)
    write_random_bytes(runs.training_state_path(run_dir), 200, seed=3)

    result = l2l("meta-train", "--out", run_dir, "--resume", "--no-evaluate")

    assert result.exit_code == 0, result.output
    assert "checksum mismatch" in result.stderr
    assert "resumed from training_state.previous.msgpack" in result.stderr


# --- Nothing to compare (row 5) ----------------------------------------------------------------


@pytest.mark.parametrize("baselines", ["", ","])
def test_nothing_to_compare_is_one_line_before_any_work(tmp_path, baselines):
    result = l2l("compare", "--baselines", baselines, "--out", tmp_path / "out")
    assert_user_error(result, "nothing to compare")
    assert not (tmp_path / "out").exists()


# --- No silent overwrite (rows 6, 7) -----------------------------------------------------------


def test_evaluate_keeps_a_runs_evaluation_unless_forced(tiny_run, tmp_path):
    run_dir = copy_run(tiny_run, tmp_path)
    before = (run_dir / "eval" / "curves.json").read_bytes()
    args = ["evaluate", "--optimizer", run_dir, "--set", "eval.num_problems=10", "--test-seed", 5]

    assert_user_error(l2l(*args), str(run_dir / "eval"), "--force")
    assert (run_dir / "eval" / "curves.json").read_bytes() == before

    result = l2l(*args, "--force")
    assert result.exit_code == 0, result.output
    assert json.loads((run_dir / "eval" / "curves.json").read_text())["num_problems"] == 10


def test_resuming_a_finished_run_keeps_its_evaluation(tiny_run, tmp_path):
    run_dir = copy_run(tiny_run, tmp_path)
    before = (run_dir / "eval" / "curves.json").read_bytes()

    result = l2l("meta-train", "--out", run_dir, "--resume")

    assert result.exit_code == 0, result.output
    assert "kept the earlier evaluation" in result.stderr
    assert (run_dir / "eval" / "curves.json").read_bytes() == before


@pytest.mark.parametrize(
    "command",
    [
        ["compare", "--baselines", "adam"],
        ["trace", "--optimizer", "adam:0.1"],
        ["evaluate", "--optimizer", "adam:0.1"],
    ],
    ids=["compare", "trace", "evaluate"],
)
def test_an_existing_output_folder_is_kept_unless_forced(tmp_path, command):
    out = tmp_path / "out"
    out.mkdir()
    (out / "earlier.txt").write_text("earlier results")

    assert_user_error(l2l(*command, *TINY_SETS, "--out", out), str(out), "--force")
    assert (out / "earlier.txt").read_text() == "earlier results"

    result = l2l(*command, *TINY_SETS, "--out", out, "--force")
    assert result.exit_code == 0, result.output
    assert not (out / "earlier.txt").exists()  # replaced, not mixed


def test_results_never_go_into_a_run_folder(tiny_run, tmp_path):
    run_dir = copy_run(tiny_run, tmp_path)
    for force in ([], ["--force"]):
        result = l2l("compare", "--baselines", "adam", *TINY_SETS, "--out", run_dir, *force)
        assert_user_error(result, "run folder")
    assert runs.best_weights_path(run_dir).is_file()


# --- Unwritable outputs (rows 8, 9, 10) --------------------------------------------------------


WRITING_COMMANDS = {
    "meta-train": ["meta-train", *TINY_SETS],
    "evaluate": ["evaluate", "--optimizer", "adam:0.1"],
    "compare": ["compare", "--baselines", "adam"],
    "trace": ["trace", "--optimizer", "adam:0.1"],
    "stylize": ["stylize", "--optimizer", "adam:0.1"],
    "sweep": ["sweep", "--learned", "mnist"],
    "plot": ["plot", "{run}"],
}
FORCEABLE = ["meta-train", "evaluate", "compare", "trace", "stylize"]


@pytest.mark.parametrize(
    "command",
    [*WRITING_COMMANDS.values(), *([*WRITING_COMMANDS[name], "--force"] for name in FORCEABLE)],
    ids=[*WRITING_COMMANDS, *(f"{name}-force" for name in FORCEABLE)],
)
def test_an_output_that_is_a_file_is_one_line(tiny_run, tmp_path, command):
    path = tmp_path / "a-file"
    path.write_text("not a folder")
    command = [str(tiny_run) if arg == "{run}" else arg for arg in command]

    result = l2l(*command, "--out", path)

    assert_user_error(result, str(path), "is a file")
    assert path.read_text() == "not a folder"


def read_only_prefix(*folders: Path) -> tuple[str, ...]:
    """A command prefix that runs a process seeing `folders` read-only: a private read-only
    bind mount for root (whom permissions do not stop), or plain permissions otherwise."""
    if os.geteuid() != 0:
        for folder in folders:
            for path in [folder, *folder.rglob("*")]:
                if path.is_dir():
                    path.chmod(0o555)
        return ()
    mounts = " && ".join(
        f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder}" for folder in folders
    )
    probe = subprocess.run(["unshare", "-m", "sh", "-c", f"{mounts} && true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a read-only mount here: {probe.stderr.decode().strip()}")
    return ("unshare", "-m", "sh", "-c", f'{mounts} && exec "$@"', "sh")


@pytest.mark.parametrize(
    "command",
    [
        ["meta-train", *TINY_SETS, "--out", "{ro}/run"],
        ["compare", "--baselines", "adam", *TINY_SETS, "--out", "{ro}/compare"],
        ["trace", "--optimizer", "adam:0.1", *TINY_SETS, "--out", "{ro}/traces"],
    ],
    ids=["meta-train", "compare", "trace"],
)
def test_an_output_on_a_read_only_file_system_is_one_line(tmp_path, command):
    read_only = tmp_path / "ro"
    read_only.mkdir()
    prefix = read_only_prefix(read_only)
    command = [arg.replace("{ro}", str(read_only)) for arg in command]

    code, stderr = finish(start(*command, prefix=prefix))

    assert_one_line_error(code, stderr, "cannot write to", str(read_only))
    assert list(read_only.iterdir()) == []


@pytest.mark.parametrize(
    "command",
    [
        ["meta-train", "--out", "{run}", "--resume"],
        ["evaluate", "--optimizer", "{run}", "--force"],
        ["plot", "{run}"],
    ],
    ids=["resume", "evaluate", "plot"],
)
def test_a_read_only_run_is_one_line(tiny_run, tmp_path, command):
    run_dir = copy_run(tiny_run, tmp_path)
    before = sorted(path.name for path in run_dir.rglob("*"))
    prefix = read_only_prefix(run_dir)
    command = [str(run_dir) if arg == "{run}" else arg for arg in command]

    code, stderr = finish(start(*command, prefix=prefix))

    assert_one_line_error(code, stderr, "cannot write to", str(run_dir))
    assert sorted(path.name for path in run_dir.rglob("*")) == before


def test_a_lock_file_alone_is_not_a_result(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_FILE).write_text("12345\n")  # left by a finished or killed writer
    result = l2l("evaluate", "--optimizer", "adam:0.1", *TINY_SETS, "--out", out)
    assert result.exit_code == 0, result.output
