"""Splitting the problems over devices or processes changes no result and moves no coordinates.

The multi-device and multi-process runs are subprocesses, since JAX fixes its devices at start-up.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_OVERRIDES

from l2lgd import runs
from l2lgd.config import Config, save_config, with_overrides
from l2lgd.distributed import initialize
from l2lgd.errors import ConfigError
from l2lgd.sharding import check_divisible, problem_mesh

TRAJECTORY_OVERRIDES = [*TINY_OVERRIDES, "meta.iterations=4", "meta.validate_every=2"]

META_TRAIN_SCRIPT = """
import json, sys
from pathlib import Path
from l2lgd import runs
from l2lgd.config import Config, save_config, with_overrides
from l2lgd.meta.train import meta_train
overrides, out = json.loads(sys.argv[1]), Path(sys.argv[2])
for devices in (1, 2):
    config = with_overrides(Config(), [*overrides, f"meta.devices={devices}"])
    runs.create_run_dir(out / str(devices), config)
    meta_train(config, out / str(devices))
"""

COLLECTIVES_SCRIPT = """
import collections, json, re, jax, numpy as np
from l2lgd.config import MetaConfig, LSTMConfig
from l2lgd.data import ImageDataset
from l2lgd.errors import ConfigError
from l2lgd.meta.unroll import init_meta_state, make_meta_iteration
from l2lgd.optimizers.learned import init_learned_weights
from l2lgd.tasks.mlp import MLPTask
rng = np.random.default_rng(0)
images = rng.integers(0, 256, (64, 8, 8), dtype=np.uint8)
labels = rng.integers(0, 10, 64).astype(np.int32)
task = MLPTask(ImageDataset("random", images, labels, images, labels, 10), (6, 5), batch_size=8)
optimizer, meta = LSTMConfig(), MetaConfig(num_problems=4, num_steps=4, unroll=2)
state = init_meta_state(init_learned_weights(jax.random.key(0), optimizer), meta)
hlo = make_meta_iteration(optimizer, meta).lower(state, task, jax.random.key(1)).compile().as_text()
ops = re.findall(r"(all-reduce|all-gather|all-to-all|collective-permute|reduce-scatter)[-a-z]*\\(", hlo)
try:
    make_meta_iteration(optimizer, MetaConfig(num_problems=3, num_steps=4, unroll=2))
    error = None
except ConfigError as uneven:
    error = str(uneven)
print(json.dumps({"devices": len(jax.devices()), "collectives": sorted(set(ops)), "error": error}))
"""


def cpu_env(devices_per_process: int) -> dict[str, str]:
    """The environment of a CPU-only JAX subprocess with this many devices."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("JAX_")}
    flags = f"--xla_force_host_platform_device_count={devices_per_process}"
    return env | {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": flags}


def assert_same_trajectory(expected: list[dict], actual: list[dict]) -> None:
    """Same iterations, and meta-losses and validation losses equal to float tolerance."""
    assert [row["iteration"] for row in actual] == [row["iteration"] for row in expected]
    for want, got in zip(expected, actual, strict=True):
        assert want.keys() == got.keys()
        for key in ("meta_loss", "validation_loss"):
            if key in want:
                assert got[key] == pytest.approx(want[key], rel=1e-5), (want["iteration"], key)


def test_two_devices_give_the_single_device_trajectory(tmp_path):
    subprocess.run(
        [sys.executable, "-c", META_TRAIN_SCRIPT, json.dumps(TRAJECTORY_OVERRIDES), str(tmp_path)],
        env=cpu_env(2),
        check=True,
        capture_output=True,
    )
    single, double = runs.read_metrics(tmp_path / "1"), runs.read_metrics(tmp_path / "2")
    assert len(single) == 5 and sum("meta_loss" in row for row in single) == 4
    assert_same_trajectory(single, double)
    assert runs.load_run_config(tmp_path / "2").meta.devices == 2


def test_a_multi_tensor_optimizee_is_split_with_no_coordinate_traffic():
    """On 2 devices, the only collective is the all-reduce of the meta-gradient and loss: each
    problem's coordinates stay on its device through every step."""
    output = subprocess.run(
        [sys.executable, "-c", COLLECTIVES_SCRIPT],
        env=cpu_env(2),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result = json.loads(output.strip().splitlines()[-1])
    assert (result["devices"], result["collectives"]) == (2, ["all-reduce"])
    assert "meta.num_problems (3) must be a multiple of the 2 devices" in result["error"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def meta_train_command(*arguments: str) -> list[str]:
    return [sys.executable, "-m", "l2lgd", "meta-train", "--task", "quadratic", *arguments]


def run_two_processes(arguments: list[str], cwd: Path) -> list[str]:
    """Runs `l2l meta-train ARGUMENTS` as processes 0 and 1 of one run; returns their stderr."""
    coordinator = f"127.0.0.1:{free_port()}"
    processes = [
        subprocess.Popen(
            meta_train_command(
                *arguments,
                "--coordinator",
                coordinator,
                "--num-processes",
                "2",
                "--process-id",
                str(index),
            ),
            env=cpu_env(1),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for index in range(2)
    ]
    try:
        outputs = [process.communicate(timeout=240)[1] for process in processes]
    finally:
        for process in processes:
            process.kill()
    for process, stderr in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr
    return outputs


def test_two_processes_agree_with_one_and_resume(tmp_path):
    """Two processes on this machine, one CPU device each, coordinated on 127.0.0.1, run the
    first 2 of 4 meta-iterations, then resume the rest from the checkpoint both read. The run
    folder process 0 writes holds the single-process trajectory; process 1 writes nothing."""
    sets = [item for override in TRAJECTORY_OVERRIDES for item in ("--set", override)]
    single, multi = tmp_path / "single", tmp_path / "multi"
    done = subprocess.run(
        meta_train_command(*sets, "--out", str(single), "--no-evaluate"),
        env=cpu_env(1),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    stderr = run_two_processes(
        [*sets, "--set", "meta.iterations=2", "--out", str(multi)], cwd=tmp_path
    )
    assert "skipped the test evaluation of a multi-process run" in stderr[0]
    assert [row["iteration"] for row in runs.read_metrics(multi)][-1] == 2
    # as if the run had been stopped after 2 of its 4 iterations
    save_config(
        with_overrides(runs.load_run_config(multi), ["meta.iterations=4"]), multi / runs.CONFIG_FILE
    )
    run_two_processes(["--resume", "--out", str(multi), "--no-evaluate"], cwd=tmp_path)
    assert_same_trajectory(runs.read_metrics(single), runs.read_metrics(multi))
    assert runs.best_weights_path(multi).is_file()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["multi", "single"]


def test_more_devices_than_visible_is_a_config_error():
    with pytest.raises(ConfigError, match="only 1 devices are visible"):
        problem_mesh(2)


def test_one_device_takes_any_number_of_problems_and_devices_is_not_negative():
    check_divisible(7, problem_mesh(1), "meta.num_problems")
    with pytest.raises(ConfigError, match="meta.devices"):
        with_overrides(Config(), ["meta.devices=-1"])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((None, 2, 0), "need --coordinator"),
        (("localhost", 2, 0), "HOST:PORT"),
        (("localhost:1234", 2, 2), r"\[0, 2\)"),
    ],
)
def test_bad_multi_process_arguments_are_config_errors(arguments, message):
    with pytest.raises(ConfigError, match=message):
        initialize(*arguments)
