"""Run an exported NIR graph in Norse, a simulator written by others (``pip install norse``).

This is the independent check of :mod:`i2e_lightning.nir.export`: Norse reads the file with its own
NIR importer (``norse.torch.from_nir``) and steps its own LIF model (forward Euler,
``v += dt / tau * (v_leak - v + I)``, fire at ``v > v_threshold``, reset to ``v_reset``) with
``dt = 1``; nothing of our network code runs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def load_norse(graph_or_path) -> nn.Module:
    """Norse's module for a NIR graph (or a ``.nir`` file), ready for batched ``[B, C, H, W]`` steps.

    NIR shapes have no batch axis (our ``Flatten`` starts at dim 0) while Norse hands ``start_dim``
    to ``torch.nn.Flatten`` unchanged, which would flatten the batch too; the one adaptation made
    here is to shift every ``Flatten`` by one axis for batched input. And nirtorch (the graph
    executor Norse uses) schedules nodes depth first, which runs a residual join before both of its
    inputs exist (it then reads the other one from the previous timestep); the schedule is re-sorted
    topologically, which changes no node.
    """
    try:
        import nir
        import norse.torch as norse
    except ImportError:  # pragma: no cover - the [nir] extra installs both
        raise ImportError("running NIR graphs needs nir and norse: pip install nir norse") from None
    graph = nir.read(str(graph_or_path)) if isinstance(graph_or_path, (str, Path)) else graph_or_path
    module = norse.from_nir(graph, dt=1.0)
    for m in module.modules():
        if isinstance(m, nn.Flatten) and m.start_dim >= 0:
            m.start_dim += 1
            m.end_dim = m.end_dim + 1 if m.end_dim >= 0 else m.end_dim
    _topological_schedule(module)
    return module.eval()


def _topological_schedule(module: nn.Module) -> None:
    order = getattr(module, "execution_order", None)
    graph = getattr(module, "graph", None)
    if order is None or graph is None:  # pragma: no cover - another nirtorch layout: leave it
        return
    parents = {node: [p for p in graph.find_source_nodes_of(node) if p in order] for node in order}
    done: list = []
    placed: set = set()
    pending = list(order)
    while pending:
        ready = next((n for n in pending if all(p in placed for p in parents[n])), None)
        if ready is None:  # a true recurrence: keep the remaining nodes in nirtorch's order
            done += pending
            break
        pending.remove(ready)
        done.append(ready)
        placed.add(ready)
    module.execution_order = done


@torch.no_grad()
def run_norse(module: nn.Module, events: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Step Norse's module over events ``[T, B, C, H, W]``; returns (mean output ``[B, K]``, per step ``[T, B, K]``)."""
    if events.dim() != 5:
        raise ValueError(f"events must be [T, B, C, H, W], got shape {tuple(events.shape)}")
    state = None
    outputs = []
    for frame in events.float().unbind(0):
        out, state = module(frame, state)
        outputs.append(out)
    steps = torch.stack(outputs)
    return steps.mean(0), steps


__all__ = ["load_norse", "run_norse"]
