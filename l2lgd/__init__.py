"""l2lgd: learning to learn by gradient descent by gradient descent (Andrychowicz et al., 2016) in JAX.

Use a learned optimizer like any optax optimizer:

    >>> import l2lgd, optax
    >>> optimizer = l2lgd.load_optimizer("mnist")        # shipped; or a run folder, a weights file
    >>> opt_state = optimizer.init(params)
    >>> updates, opt_state = optimizer.update(grads, opt_state)
    >>> params = optax.apply_updates(params, updates)

`l2lgd.learned_optimizer(weights, config)` builds the same from weights in hand.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from l2lgd.optimizers.learned import learned_optimizer
    from l2lgd.pretrained import pretrained_names
    from l2lgd.sources import load_learned, load_optimizer

# Imported on first use, so that `import l2lgd` (and with it the `l2l` command, before it can take
# a Ctrl-C) does not wait for JAX.
_EXPORTS = {
    "learned_optimizer": "l2lgd.optimizers.learned",
    "load_learned": "l2lgd.sources",
    "load_optimizer": "l2lgd.sources",
    "pretrained_names": "l2lgd.pretrained",
}
__all__ = ["learned_optimizer", "load_learned", "load_optimizer", "pretrained_names"]


def __getattr__(name: str) -> Any:
    """The public functions, imported from their modules when first asked for."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'l2lgd' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
