"""l2lgd: learning to learn by gradient descent by gradient descent (Andrychowicz et al., 2016) in JAX.

Use a learned optimizer like any optax optimizer:

    >>> import l2lgd, optax
    >>> optimizer = l2lgd.load_optimizer("mnist")        # shipped; or a run folder, a weights file
    >>> opt_state = optimizer.init(params)
    >>> updates, opt_state = optimizer.update(grads, opt_state)
    >>> params = optax.apply_updates(params, updates)

`l2lgd.learned_optimizer(weights, config)` builds the same from weights in hand.
"""

from l2lgd.optimizers.learned import learned_optimizer
from l2lgd.pretrained import pretrained_names
from l2lgd.sources import load_learned, load_optimizer

__all__ = ["learned_optimizer", "load_learned", "load_optimizer", "pretrained_names"]
