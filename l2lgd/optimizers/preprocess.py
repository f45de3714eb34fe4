"""Gradient preprocessing of the paper's Appendix A, which maps gradients of any magnitude to O(1) inputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def log_sign_preprocess(grad: jax.Array, p: float = 10.0) -> jax.Array:
    """Maps each gradient coordinate to two features.

    (log|g| / p, sign g) if |g| >= e^-p, else (-1, e^p g). The two branches meet at |g| = e^-p,
    so small gradients keep their sign and scale without log(0).

    Args:
      grad: gradients, any shape.
      p: the paper's p > 0 (10 in the paper).

    Returns:
      An array of shape grad.shape + (2,).

    References:
      Andrychowicz et al., 2016, Appendix A (arXiv 1606.04474).
    """
    abs_grad = jnp.abs(grad)
    is_large = abs_grad >= jnp.exp(-p)
    # The `where` guards log(0) in the unused branch so that its gradient stays finite.
    safe_abs = jnp.where(is_large, abs_grad, 1.0)
    first = jnp.where(is_large, jnp.log(safe_abs) / p, -1.0)
    second = jnp.where(is_large, jnp.sign(grad), jnp.exp(p) * grad)
    return jnp.stack([first, second], axis=-1)


def preprocess(grad: jax.Array, kind: str, p: float) -> jax.Array:
    """The LSTM's input features for gradients `grad`: shape grad.shape + (features,)."""
    if kind == "log_sign":
        return log_sign_preprocess(grad, p)
    return grad[..., None]


def num_features(kind: str) -> int:
    """How many input features per coordinate a preprocessing produces."""
    return 2 if kind == "log_sign" else 1
