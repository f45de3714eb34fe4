"""Gradient preprocessing: the paper's Appendix A (log/sign), which maps gradients of any
magnitude to O(1) inputs, and "normalized", which divides the gradient and its momenta by a
running root mean square, so that the inputs do not change when the loss is rescaled."""

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
    is_large = jnp.abs(grad) >= jnp.exp(-p)
    second = jnp.where(is_large, jnp.sign(grad), jnp.exp(p) * grad)
    return jnp.stack([clipped_log(jnp.abs(grad), p), second], axis=-1)


def clipped_log(magnitude: jax.Array, q: float) -> jax.Array:
    """log(magnitude) / q where magnitude >= e^-q, else -1: values in [-1, inf) that meet at
    the threshold. log/sign's first feature (q = p), and log(RMS) / p from the mean square
    (q = 2p, since log(RMS) / p = log(mean square) / 2p)."""
    is_large = magnitude >= jnp.exp(-q)
    # The `where` guards log(0) in the unused branch so that its gradient stays finite.
    safe = jnp.where(is_large, magnitude, 1.0)
    return jnp.where(is_large, jnp.log(safe) / q, -1.0)


def preprocess(grad: jax.Array, kind: str, p: float) -> jax.Array:
    """The LSTM's input features for gradients `grad`: shape grad.shape + (features,). The
    stateful "normalized" preprocessing is `update_moments` and `normalized_features`."""
    if kind == "log_sign":
        return log_sign_preprocess(grad, p)
    return grad[..., None]


def num_features(
    kind: str, momentum_decays: tuple[float, ...] = (), log_rms_feature: bool = False
) -> int:
    """How many input features per coordinate a preprocessing produces."""
    if kind == "normalized":
        return 1 + len(momentum_decays) + int(log_rms_feature)
    return 2 if kind == "log_sign" else 1


def moment_decays(second_moment_decay: float, momentum_decays: tuple[float, ...]) -> jax.Array:
    """The decay of each row of the moments array, as a column: (1 + momenta, 1)."""
    return jnp.array([second_moment_decay, *momentum_decays], jnp.float32)[:, None]


def update_moments(
    grad: jax.Array,
    moments: jax.Array,
    second_moment_decay: float,
    momentum_decays: tuple[float, ...] = (),
) -> jax.Array:
    """The running moments after gradient `grad` (coordinates,): row 0 the mean square, then
    one exponential moving average of the gradient per momentum decay, each (1 + momenta,
    coordinates).

    A coordinate whose mean square is still 0 has seen no nonzero gradient: its moments start
    at this gradient (instead of Adam's bias correction, which would need a step count).
    """
    targets = jnp.concatenate(
        [grad[None] ** 2, jnp.broadcast_to(grad, (len(momentum_decays), grad.shape[-1]))]
    ).astype(moments.dtype)
    decays = moment_decays(second_moment_decay, momentum_decays).astype(moments.dtype)
    averaged = decays * moments + (1 - decays) * targets
    return jnp.where(moments[0] == 0, targets, averaged)


def normalized_features(
    grad: jax.Array, moments: jax.Array, log_rms_p: float | None = None
) -> jax.Array:
    """(1 + momenta, coordinates) LSTM inputs: the gradient and each momentum divided by the
    root mean square (`update_moments`' row 0); 0 where that is 0. Multiplying the loss by any
    c > 0 leaves them unchanged. With `log_rms_p`, one more row: `log_rms_feature`."""
    mean_square = moments[0]
    has_scale = mean_square > 0
    inverse_rms = jnp.where(has_scale, jax.lax.rsqrt(jnp.where(has_scale, mean_square, 1.0)), 0.0)
    features = jnp.concatenate([grad[None], moments[1:]]) * inverse_rms
    if log_rms_p is None:
        return features
    return jnp.concatenate([features, log_rms_feature(mean_square, log_rms_p)])


def log_rms_feature(mean_square: jax.Array, p: float) -> jax.Array:
    """(1, coordinates): log(running RMS) / p, and -1 where the RMS is below e^-p, as log/sign's
    first feature treats |g|. It hands back the scale that the normalized inputs remove, for an
    LSTM meta-trained over a range of scales to use where the scale tells the step that fits."""
    return clipped_log(mean_square, 2.0 * p)[None]
