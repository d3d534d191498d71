"""Export-friendly stand-ins for the snnTorch neurons of ``i2e_lightning.models``.

snnTorch's ``Leaky`` fires through a surrogate ``autograd.Function`` and keeps its membrane as
module state, neither of which the ONNX exporter can trace. :class:`ExportLIF` is the same
forward dynamics as plain tensor arithmetic on ``[T, B, ...]``, unrolled over T when traced:

    reset = H(mem - threshold)                  (the previous step's spike, snnTorch's delayed reset)
    mem   = beta * (1 - reset) * mem + x        (reset "zero"; "subtract": beta * mem + x - reset * threshold)
    spike = H(mem - threshold) * graded_factor

with ``H(u) = u >= 0`` (inclusive firing edge, SpikingJelly / the official code) or ``u > 0``
(snnTorch's own surrogates). The operations run in the same order as snnTorch's, so eval-mode
outputs match bit for bit in PyTorch.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

RESETS = ("subtract", "zero", "none")


class ExportLIF(nn.Module):
    """Surrogate-free multi-step LIF on ``[T, B, ...]`` with the parameters of an snnTorch ``Leaky``."""

    def __init__(
        self,
        beta: Tensor | float,
        threshold: Tensor | float,
        reset_mechanism: str = "zero",
        inclusive: bool = True,
        graded_spikes_factor: Tensor | float = 1.0,
    ) -> None:
        super().__init__()
        if reset_mechanism not in RESETS:
            raise ValueError(f"reset_mechanism must be one of {RESETS}, got {reset_mechanism!r}")
        # snnTorch clamps beta to [0, 1] in every step; do it once here
        self.register_buffer("beta", torch.as_tensor(beta, dtype=torch.float32).detach().clone().clamp(0, 1))
        self.register_buffer("threshold", torch.as_tensor(threshold, dtype=torch.float32).detach().clone())
        self.register_buffer("graded", torch.as_tensor(graded_spikes_factor, dtype=torch.float32).detach().clone())
        self.reset_mechanism = reset_mechanism
        self.inclusive = bool(inclusive)

    def _fire(self, mem: Tensor) -> Tensor:
        shifted = mem - self.threshold
        return (shifted >= 0 if self.inclusive else shifted > 0).to(mem.dtype)

    def forward(self, x: Tensor) -> Tensor:
        mem = torch.zeros_like(x[0])
        spikes = []
        for t in range(x.shape[0]):
            reset = self._fire(mem)
            if self.reset_mechanism == "zero":
                mem = self.beta * ((1 - reset) * mem) + x[t]
            elif self.reset_mechanism == "subtract":
                mem = self.beta * mem + x[t] - reset * self.threshold
            else:
                mem = self.beta * mem + x[t]
            spikes.append(self._fire(mem) * self.graded)
        return torch.stack(spikes)

    def extra_repr(self) -> str:
        return f"reset={self.reset_mechanism}, inclusive={self.inclusive}"


def _firing_edge_inclusive(neuron: nn.Module) -> bool:
    # our ATan carries the edge; snnTorch's own surrogates fire on u > 0
    return bool(getattr(getattr(neuron, "spike_grad", None), "inclusive", False))


def export_lif_from(neuron: nn.Module) -> ExportLIF:
    """An :class:`ExportLIF` with the beta/threshold/reset/firing edge of a multi-step snnTorch neuron."""
    if getattr(neuron, "inhibition", False) or getattr(neuron, "state_quant", False):
        raise ValueError(
            f"{type(neuron).__name__} uses inhibition or state quantisation, which the ONNX export does not support"
        )
    if not getattr(neuron, "reset_delay", True):
        raise ValueError(f"{type(neuron).__name__} has reset_delay=False, which the ONNX export does not support")
    return ExportLIF(
        beta=neuron.beta,
        threshold=neuron.threshold,
        reset_mechanism=neuron.reset_mechanism,
        inclusive=_firing_edge_inclusive(neuron),
        graded_spikes_factor=getattr(neuron, "graded_spikes_factor", 1.0),
    )


def make_exportable(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode with every multi-step LIF swapped for :class:`ExportLIF`.

    The user's model is left untouched. Any other snnTorch neuron (single-step, ``init_hidden``...)
    raises a ``ValueError`` naming it, since its calling convention is unknown here.
    """
    from snntorch._neurons.neurons import SpikingNeuron

    from ..models.neurons import MultiStepLeaky

    clone = copy.deepcopy(model).eval()
    swaps: list[tuple[nn.Module, str, nn.Module]] = []
    for parent_name, parent in clone.named_modules():
        for name, child in parent.named_children():
            full = f"{parent_name}.{name}" if parent_name else name
            if isinstance(child, MultiStepLeaky):
                swaps.append((parent, name, export_lif_from(child)))
            elif isinstance(child, SpikingNeuron):
                raise ValueError(
                    f"module {full!r} is a {type(child).__name__}, which the ONNX export cannot unroll: "
                    "build the model from i2e_lightning.models neurons (MultiStepLeaky)"
                )
    for parent, name, new in swaps:
        setattr(parent, name, new)
    if not swaps:
        raise ValueError("the model has no MultiStepLeaky neurons: is it a spiking network from i2e_lightning.models?")
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone
