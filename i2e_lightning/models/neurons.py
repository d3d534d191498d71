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

__all__ = ["ATan", "ATanSpike", "MultiStepLeaky"]


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
        if torch.compiler.is_compiling():  # inductor fuses compare + cast anyway; out= would break the graph
            return (x >= 0).to(x.dtype) if inclusive else (x > 0).to(x.dtype)
        # eager: compare straight into a float tensor, one kernel instead of compare + cast
        out = torch.empty_like(x)
        return torch.ge(x, 0, out=out) if inclusive else torch.gt(x, 0, out=out)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        alpha = ctx.alpha
        # alpha/2 / (1 + (pi/2 alpha x)^2) == 1 / (2/alpha + (pi^2 alpha / 2) x^2): two kernels instead of five
        denom = torch.addcmul(
            torch.tensor(2.0 / alpha, dtype=x.dtype, device=x.device), x, x, value=math.pi**2 * alpha / 2
        )
        return grad_output / denom, None, None


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


_PLAIN_ATTRS = frozenset({"mem", "reset", "_prev_spk"})


class MultiStepLeaky(snn.Leaky):
    """``snntorch.Leaky`` that consumes a whole ``[T, B, ...]`` sequence in one call.

    ``forward(x)`` takes ``[T, B, ...]`` and returns spikes of the same shape. The membrane starts at
    zero on every call, and snnTorch's own step (``Leaky.forward`` with an explicit membrane) runs once
    per timestep: reset from the previous spike (detached), ``mem = beta * mem + x``, fire.

    With ``beta=0.5, threshold=1, reset_mechanism="zero"`` this is SpikingJelly's
    ``LIFNode(tau=2, decay_input=False, v_reset=0, detach_reset=True)``. Driving it cheaply changes no
    value: the reset signal reuses the previous step's spike instead of recomputing it, a unit spike
    factor skips its multiply, and the per-step state is a plain attribute instead of a buffer.
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
        # snnTorch keeps the membrane as a (non-persistent) buffer and reassigns it several times per
        # step; nn.Module.__setattr__ for buffers costs ~10 us each, more than the arithmetic on small
        # maps. Our membrane lives only inside one forward, so a plain attribute does (see __setattr__).
        del self._buffers["mem"]
        self.mem = torch.zeros(0)
        self._prev_spk: torch.Tensor | None = None
        self._update_graded_flag()
        self.record = False
        self.last_rate: torch.Tensor | None = None

    def __setattr__(self, name: str, value) -> None:
        if name in _PLAIN_ATTRS:
            object.__setattr__(self, name, value)  # per-step state: skip nn.Module's bookkeeping
        else:
            super().__setattr__(name, value)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        _forget_instance(self)
        # objects pickled by older versions kept the membrane as a buffer
        if self._buffers.pop("mem", None) is not None or "mem" not in self.__dict__:
            self.mem = torch.zeros(0)
        self.__dict__.setdefault("_prev_spk", None)
        self.__dict__.setdefault("record", False)
        self.__dict__.setdefault("last_rate", None)
        if "_config_key" not in self.__dict__:
            self._update_graded_flag()

    def mem_reset(self, mem: torch.Tensor) -> torch.Tensor:
        # snnTorch recomputes the reset signal as spike_grad(mem - threshold).clone().detach() from the
        # previous step's membrane: that is exactly the previous (ungraded) spike, detached. Reuse it.
        prev = self._prev_spk
        if prev is not None:
            return prev.detach()
        return super().mem_reset(mem)

    def fire(self, mem: torch.Tensor) -> torch.Tensor:
        spk = self.spike_grad(mem - self.threshold)
        self._prev_spk = spk
        return spk if self._unit_graded else spk * self.graded_spikes_factor

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._update_graded_flag()

    def _update_graded_flag(self) -> None:
        # plain python values (not tensor tests per step) keep the loop free of syncs / graph breaks
        g = self.graded_spikes_factor
        self._unit_graded = not isinstance(g, torch.nn.Parameter) and bool(g.detach().eq(1).all())
        fixed = not any(isinstance(v, torch.nn.Parameter) for v in (self.beta, self.threshold, g))
        sg = self.spike_grad
        self._config_key = (
            (tuple(self.beta.tolist()) if self.beta.dim() else float(self.beta),
             tuple(self.threshold.tolist()) if self.threshold.dim() else float(self.threshold),
             self.reset_mechanism, type(sg), getattr(sg, "alpha", None), getattr(sg, "inclusive", None),
             tuple(g.flatten().tolist()))
            if fixed and isinstance(sg, ATan)
            else None
        )  # fmt: skip

    def same_dynamics(self, other: torch.nn.Module) -> bool:
        """Whether ``other`` maps every input to the same spikes (fixed, equal constants and surrogate)."""
        return (
            isinstance(other, MultiStepLeaky) and self._config_key is not None and self._config_key == other._config_key
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        # unbind: its backward is one stack of the step gradients; x[t] would make T full-size
        # zero tensors in backward (SelectBackward), O(T^2) memory traffic
        steps = x.unbind(0)
        mem = torch.zeros_like(steps[0])
        spikes = []
        self._prev_spk = None
        try:
            for xt in steps:
                spk, mem = super().forward(xt, mem)
                spikes.append(spk)
        finally:
            # drop the membrane and last spike so nothing (memory, graph, state) outlives the call
            self._prev_spk = None
            self.reset = None
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
