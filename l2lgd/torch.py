"""The learned optimizer as a `torch.optim.Optimizer`: the same weights, the same arithmetic.

`LearnedOptimizer(model.parameters(), "mnist")` loads a shipped optimizer, a weights file or a
run folder (as `l2lgd.load_optimizer` does) and updates PyTorch parameters in place. Every
coordinate keeps the LSTM's (hidden, cell) state, as in the JAX transformation; a step
preprocesses the gradients, runs the LSTM over all coordinates of an LSTM's parameters as the
columns of one matrix, and adds `output_scale` times its output to the parameters.

Needs the `torch` extra: `pip install l2lgd[torch]`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from l2lgd.errors import L2LError
from l2lgd.optimizers.learned import lstm_architecture
from l2lgd.optimizers.lstm import gate_scale_and_shift
from l2lgd.sources import load_learned

SUPPORTED_KINDS = ("lstm", "lstm_gac")
STATE_KEY = "lstm_state"
"""Each parameter's optimizer state: a tensor (layers, 2, hidden_size, numel) of its
coordinates' (hidden, cell) per LSTM layer."""
MOMENTS_KEY = "moments"
"""With the "normalized" preprocessing, also each parameter's running moments: (1 + momenta,
numel), the mean square first (`l2lgd.optimizers.preprocess.update_moments`)."""


class CoordinatewiseLSTMNet:
    """One coordinatewise LSTM with fixed weights, in torch: `step(grads, state)` on a matrix
    whose columns are coordinates, as `l2lgd.optimizers.lstm.lstm_update` computes it."""

    def __init__(self, weights: Mapping[str, Any], config: Any) -> None:
        self.num_layers = config.num_layers
        self.hidden_size = config.hidden_size
        self.gac_cells = getattr(config, "gac_cells", 0) if config.kind == "lstm_gac" else 0
        self.preprocessing = config.preprocessing
        self.preprocessing_p = float(config.preprocessing_p)
        self.output_scale = float(config.output_scale)
        self.num_moments = lstm_architecture(config).num_moments
        self.log_rms_feature = config.log_rms_feature
        decays = [config.second_moment_decay, *config.momentum_decays]
        self.moment_decays = torch.tensor(decays)[:, None]
        self.layers = [_dense(weights[f"lstm_{layer}"]) for layer in range(self.num_layers)]
        self.output = _dense(weights["output"])
        scale, shift = gate_scale_and_shift(self.hidden_size, np.float32)
        self.gate_scale, self.gate_shift = torch.from_numpy(scale), torch.from_numpy(shift)

    def features(self, grads: torch.Tensor) -> torch.Tensor:
        """(coordinates,) gradients -> (features, coordinates) LSTM inputs (the paper's
        Appendix A for "log_sign", as `l2lgd.optimizers.preprocess.log_sign_preprocess`)."""
        if self.preprocessing != "log_sign":
            return grads[None]
        p = self.preprocessing_p
        first = _clipped_log(grads.abs(), p)
        second = torch.where(grads.abs() >= math.exp(-p), torch.sign(grads), math.exp(p) * grads)
        return torch.stack([first, second])

    def normalized_features(
        self, grads: torch.Tensor, moments: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The "normalized" preprocessing: the new running moments (mean square, then one mean
        per momentum decay; a coordinate starts at its first nonzero gradient) and the inputs,
        the gradient and momenta over the root mean square (0 where that is 0), then with
        `log_rms_feature` log(RMS) / p (-1 below e^-p; `preprocess.log_rms_feature`)."""
        targets = torch.cat([grads[None] ** 2, grads.expand(self.num_moments - 1, -1)])
        averaged = self.moment_decays * moments + (1 - self.moment_decays) * targets
        moments = torch.where(moments[0] == 0, targets, averaged)
        mean_square = moments[0]
        inverse_rms = torch.where(
            mean_square > 0, mean_square.clamp_min(torch.finfo(mean_square.dtype).tiny).rsqrt(), 0.0
        )
        features = torch.cat([grads[None], moments[1:]]) * inverse_rms
        if self.log_rms_feature:
            log_rms = _clipped_log(mean_square, 2.0 * self.preprocessing_p)
            features = torch.cat([features, log_rms[None]])
        return features, moments

    def step(
        self, grads: torch.Tensor, state: torch.Tensor, moments: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """(coordinates,) gradients, their (layers, 2, hidden, coordinates) state and, for the
        "normalized" preprocessing, their moments -> the updates to add, the new state and the
        new moments."""
        if self.num_moments:
            layer_input, moments = self.normalized_features(grads, moments)
        else:
            layer_input = self.features(grads)
        new_state = []
        for (kernel, bias), layer_state in zip(self.layers, state, strict=True):
            hidden, cell = self.lstm_cell(kernel, bias, layer_input, layer_state[0], layer_state[1])
            if self.gac_cells:
                averages = hidden[: self.gac_cells].mean(dim=1, keepdim=True)
                hidden = torch.cat([averages.expand(-1, hidden.shape[1]), hidden[self.gac_cells :]])
            new_state.append(torch.stack([hidden, cell]))
            layer_input = hidden
        kernel, bias = self.output
        output = (kernel.T @ layer_input + bias[:, None])[0]
        return self.output_scale * output, torch.stack(new_state), moments

    def lstm_cell(
        self,
        kernel: torch.Tensor,
        bias: torch.Tensor,
        inputs: torch.Tensor,
        hidden: torch.Tensor,
        cell: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One LSTM step of every column: gates in the order input, forget, candidate, output,
        through one sigmoid (tanh(x) = 2 sigmoid(2x) - 1; the forget gate's +1 bias a shift)."""
        gates = torch.addmm(bias[:, None], kernel.T, torch.cat([inputs, hidden]))
        gates = torch.addcmul(self.gate_shift, gates, self.gate_scale).sigmoid_()
        in_gate, forget_gate, candidate, out_gate = torch.chunk(gates, 4)
        cell = torch.addcmul(forget_gate * cell, in_gate, candidate.mul(2.0).sub_(1.0))
        return out_gate * torch.tanh(cell), cell

    def zero_state(self, coordinates: int) -> torch.Tensor:
        """The initial (all-zero) state of `coordinates` coordinates."""
        return torch.zeros(self.num_layers, 2, self.hidden_size, coordinates)

    def zero_moments(self, coordinates: int) -> torch.Tensor:
        """The initial (all-zero) running moments of `coordinates` coordinates."""
        return torch.zeros(self.num_moments, coordinates)


def _clipped_log(magnitude: torch.Tensor, q: float) -> torch.Tensor:
    """log(magnitude) / q where magnitude >= e^-q, else -1
    (`l2lgd.optimizers.preprocess.clipped_log`)."""
    is_large = magnitude >= math.exp(-q)
    safe = torch.where(is_large, magnitude, torch.ones_like(magnitude))
    return torch.where(is_large, torch.log(safe) / q, -1.0)


def _dense(params: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """A flax Dense's (kernel, bias) as float32 torch tensors."""
    return tuple(torch.from_numpy(np.array(params[k], np.float32)) for k in ("kernel", "bias"))


class LearnedOptimizer(torch.optim.Optimizer):
    """A meta-trained LSTM optimizer (kinds lstm and lstm_gac) for PyTorch parameters.

    Args:
      params: the parameters, or parameter groups (dicts). An optimizer trained with one LSTM
        per parameter group (`optimizer.groups`, e.g. the shipped `cifar10`) needs groups, each
        naming its LSTM under the key "lstm" (for `cifar10`: "conv" for the conv kernels, "fc"
        for the rest).
      optimizer: a shipped name ("mnist"), a weights file or a run folder.

    All the parameters of one LSTM are one problem, as for the JAX transformation: global
    averaging cells average over all of them. Parameters whose `.grad` is None are skipped.

    Example:
      >>> opt = LearnedOptimizer(model.parameters(), "mnist")
      >>> loss = loss_fn(model(x), y); opt.zero_grad(); loss.backward(); opt.step()
    """

    def __init__(self, params: Iterable[Any], optimizer: str | Path = "mnist") -> None:
        learned = load_learned(optimizer)
        config = learned.config
        if config.kind not in SUPPORTED_KINDS:
            raise L2LError(
                f"{optimizer}: optimizer.kind {config.kind!r} is not supported in PyTorch "
                f"(supported: {', '.join(SUPPORTED_KINDS)})"
            )
        weights = learned.weights
        if config.groups == "none":
            self.networks = {"": CoordinatewiseLSTMNet(weights, config)}
        else:
            self.networks = {
                name: CoordinatewiseLSTMNet(member, config) for name, member in weights.items()
            }
        self.source = str(optimizer)
        super().__init__(
            params, {"lstm": next(iter(self.networks)) if config.groups == "none" else None}
        )
        for group in self.param_groups:
            if group["lstm"] not in self.networks:
                raise L2LError(
                    f"{optimizer} has one LSTM per parameter group "
                    f"({', '.join(self.networks)}): give parameter groups as dicts with "
                    f"'lstm' naming one of them (got {group['lstm']!r})"
                )

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        """One update of every parameter that has a gradient; returns `closure()`'s loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for name, network in self.networks.items():
            params = [
                p
                for group in self.param_groups
                if group["lstm"] == name
                for p in group["params"]
                if p.grad is not None
            ]
            if params:
                self._update(network, params)
        return loss

    def _update(self, network: CoordinatewiseLSTMNet, params: list[torch.Tensor]) -> None:
        """Runs one LSTM over all of `params`' coordinates and adds its updates in place."""
        keys = {STATE_KEY: network.zero_state}
        if network.num_moments:
            keys[MOMENTS_KEY] = network.zero_moments
        for p in params:
            for key, zeros in keys.items():
                if key not in self.state[p]:
                    self.state[p][key] = zeros(p.numel())
        grads = torch.cat([p.grad.reshape(-1).float() for p in params])
        joined = {key: torch.cat([self.state[p][key] for p in params], dim=-1) for key in keys}
        updates, state, moments = network.step(grads, joined[STATE_KEY], joined.get(MOMENTS_KEY))
        sizes = [p.numel() for p in params]
        new = {STATE_KEY: state, MOMENTS_KEY: moments}
        per_param = {key: new[key].split(sizes, dim=-1) for key in keys}
        for index, (p, update) in enumerate(zip(params, updates.split(sizes), strict=True)):
            p.add_(update.reshape(p.shape).to(p.dtype))
            for key in keys:
                self.state[p][key] = per_param[key][index].contiguous()
