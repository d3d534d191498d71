"""snnTorch LIF neurons driven over a whole sequence, with a picklable ATan surrogate.

Activations travel as ``[T, B, ...]``; conv / BN / pooling fold time into the batch (see
``layers.py``) so they run once over all timesteps. Only the neuron loops over T: it steps an
``snntorch.Leaky`` with an explicit membrane that starts from zero on every call (no state leaks
between forwards).
"""

from __future__ import annotations

import math

import snntorch as snn
import torch
from snntorch._neurons.neurons import SpikingNeuron

__all__ = ["ATan", "ATanSpike", "MultiStepLeaky", "lif"]


class ATanSpike(torch.autograd.Function):
    """Heaviside forward, arc-tangent surrogate backward (SpikingJelly's ``surrogate.ATan``).

    ``g'(x) = alpha / 2 / (1 + (pi / 2 * alpha * x)^2)``. ``inclusive`` picks the firing edge:
    ``x >= 0`` (SpikingJelly / the official I2E code) or ``x > 0`` (snnTorch's own surrogates).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float, inclusive: bool) -> torch.Tensor:  # type: ignore[override]
        if x.requires_grad:
            ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x >= 0).to(x.dtype) if inclusive else (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        alpha = ctx.alpha
        grad = grad_output * (alpha / 2) / (1 + (math.pi / 2 * alpha * x).square())
        return grad, None, None


class ATan:
    """Picklable ATan surrogate for ``snntorch`` neurons (``spike_grad=ATan()``).

    snnTorch's ``surrogate.atan()`` returns a closure, which breaks ``pickle``, ``torch.save(model)``
    and ``ddp_spawn``; a module-level class with plain attributes pickles fine.
    """

    def __init__(self, alpha: float = 2.0, inclusive: bool = True) -> None:
        self.alpha = float(alpha)
        self.inclusive = bool(inclusive)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return ATanSpike.apply(x, self.alpha, self.inclusive)

    def __repr__(self) -> str:
        return f"ATan(alpha={self.alpha}, inclusive={self.inclusive})"


class MultiStepLeaky(snn.Leaky):
    """``snntorch.Leaky`` that consumes a whole ``[T, B, ...]`` sequence in one call.

    ``forward(x)`` takes ``[T, B, ...]`` and returns spikes of the same shape. The membrane starts at zero on every call; the snnTorch step (reset from the
    previous step's spike, detached; ``mem = beta * mem + x``; fire) is unchanged.

    With ``beta=0.5, threshold=1, reset_mechanism="zero"`` this is SpikingJelly's
    ``LIFNode(tau=2, decay_input=False, v_reset=0, detach_reset=True)``.
    """

    def __init__(
        self,
        beta: float = 0.5,
        threshold: float = 1.0,
        spike_grad: ATan | None = None,
        reset_mechanism: str = "zero",
        learn_beta: bool = False,
        learn_threshold: bool = False,
    ) -> None:
        super().__init__(
            beta=beta,
            threshold=threshold,
            spike_grad=spike_grad if spike_grad is not None else ATan(),
            init_hidden=False,
            learn_beta=learn_beta,
            learn_threshold=learn_threshold,
            reset_mechanism=reset_mechanism,
            reset_delay=True,
        )
        # snnTorch keeps a class-level list of every neuron ever built (for init_hidden=True resets);
        # we never use it, and it would keep dead models (and their last membranes) alive forever.
        _forget_instance(self)
        self.record = False
        self.last_rate: torch.Tensor | None = None

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        _forget_instance(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        mem = torch.zeros_like(x[0])
        spikes = []
        for t in range(x.shape[0]):
            spk, mem = super().forward(x[t], mem)
            spikes.append(spk)
        # drop the membrane buffer so nothing (memory, autograd graph, state) outlives the call
        self.mem = torch.zeros(0, device=x.device)
        out = torch.stack(spikes)
        if self.record:
            self.last_rate = out.detach().float().mean()
        return out

    def extra_repr(self) -> str:
        return (
            f"beta={float(self.beta):g}, threshold={float(self.threshold):g}, "
            f"reset={self.reset_mechanism}, spike_grad={self.spike_grad!r}"
        )


def _forget_instance(neuron: SpikingNeuron) -> None:
    insts = SpikingNeuron.instances
    for i in range(len(insts) - 1, -1, -1):
        if insts[i] is neuron:
            del insts[i]


def lif(**kw) -> MultiStepLeaky:
    """The paper's LIF: tau 2 (beta 0.5), threshold 1, hard reset to 0 (detached), ATan(alpha=2)."""
    return MultiStepLeaky(**kw)

