"""The benchmark's matmul FLOP count against counts worked out by hand."""

import importlib.util
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

SPEC = importlib.util.spec_from_file_location(
    "benchmark", Path(__file__).parents[1] / "scripts" / "benchmark.py"
)
benchmark = importlib.util.module_from_spec(SPEC)
sys.modules["benchmark"] = benchmark  # its flax module is a dataclass, which looks itself up
SPEC.loader.exec_module(benchmark)


def test_matmul_flops_counts_each_scan_step_and_the_backward_pass():
    a, x = jnp.ones((8, 5)), jnp.ones((5, 3))

    def loop(a, x):  # 4 steps of (5x5) @ (5x3), inside a jitted function
        square = a.T @ a  # 2 * 5 * 5 * 8
        return jax.lax.scan(lambda y, _: (jnp.tanh(square @ y), None), x, length=4)[0].sum()

    forward = 2 * 5 * 5 * 8 + 4 * (2 * 5 * 3 * 5)
    assert benchmark.matmul_flops(jax.jit(loop), a, x) == forward
    # reverse mode: each matmul's two transposed products (operand gradients) on top
    assert benchmark.matmul_flops(jax.grad(loop), a, x) == 3 * forward
