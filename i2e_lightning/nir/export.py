"""Trained spiking networks as NIR graphs (Neuromorphic Intermediate Representation, ``pip install nir``).

What the graph holds, and how it maps the snnTorch network:

* **Time.** One I2E timestep is one NIR time unit: ``dt = 1``. A NIR ``LIF`` is the ODE
  ``tau dv/dt = (v_leak - v) + r I``; its forward-Euler step with ``dt = 1`` is
  ``v <- (1 - 1/tau) v + (r/tau) I``. snnTorch's ``Leaky`` step is ``v <- beta v + x``, so
  ``tau = 1 / (1 - beta)``, ``v_leak = 0``, and the input must arrive as ``x / (1 - beta)``.
  That factor is folded into the weights feeding the neuron and ``r = 1`` is written, because
  NIR readers (Norse, Sinabs, snnTorch) ignore ``r``; with the default ``beta = 0.5`` it is a
  power of two (x2), so the folding is exact.
* **Firing and reset.** snnTorch fires at ``v >= threshold`` (our ATan surrogate is inclusive)
  and resets to zero (``reset_mechanism="zero"``); NIR fires at ``v > v_threshold`` and sets
  ``v = v_reset``. ``v_threshold`` is written as the largest float32 below the threshold, so
  ``v > v_threshold`` and ``v >= threshold`` are the same test on float32 membranes, and
  ``v_reset = 0``. Reset by subtraction has no NIR form and is refused.
* **BatchNorm** (eval statistics) is folded into the convolution before it: ``W * g / sqrt(var + eps)``,
  bias ``b - mean * g / sqrt(var + eps)``.
* **Pooling.** NIR has no max pooling. Max pooling of the membrane inputs is replaced by average
  pooling: a ``SumPool2d`` with the ``1 / k^2`` folded into the convolution before it (exact for
  2x2), or, where it pads (MS-ResNet's 3x3 stem pool, which NIR readers do not pad), a depthwise
  ``Conv2d`` with weights ``1 / 9``; the global average pool is a depthwise ``Conv2d`` over the
  whole map. A network trained with ``pool="avg"`` exports exactly; one trained with max pooling
  changes (:func:`nir_compatible` gives the PyTorch twin, to measure the accuracy cost).
* **Residual sums** (MS-ResNet's membrane shortcut) are graph edges: a NIR node sums all its inputs,
  so every consumer of a residual stream gets an edge from each term of the stream.
* **Readout.** The graph's output is the classifier's ``Affine`` at every timestep; the logits are
  its mean over the T steps, as in :class:`~i2e_lightning.models.SpikingCNN`.

The graph takes one sample ``[2, H, W]`` per step (NIR shapes carry no batch axis).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..models.cnn import SpikingCNN
from ..models.layers import SeqAdaptiveAvgPool2d, SeqAvgPool2d, SeqBatchNorm2d, SeqConv2d, SeqMaxPool2d
from ..models.ms_resnet import MSBasicBlock, MSBottleneck, MSResNet
from ..models.neurons import MultiStepLeaky

F32 = np.float32
SUPPORTED = (SpikingCNN, MSResNet)


def _nir():
    try:
        import nir
    except ImportError:  # pragma: no cover - nir is a dependency of the [nir] extra
        raise ImportError("NIR export needs the nir package: pip install nir (or pip install -e '.[nir]')") from None
    return nir


def nir_compatible(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every max pooling replaced by the average pooling of the same window.

    This is the network the NIR graph of a max-pooling model computes; evaluate it in PyTorch to
    measure what the replacement costs in accuracy. Models without max pooling come back unchanged.
    """
    twin = copy.deepcopy(model)
    for name, module in list(twin.named_modules()):
        if isinstance(module, SeqMaxPool2d):
            parent = twin.get_submodule(name.rsplit(".", 1)[0]) if "." in name else twin
            avg = SeqAvgPool2d(module.kernel_size, module.stride, module.padding, ceil_mode=module.ceil_mode)
            setattr(parent, name.rsplit(".", 1)[-1], avg)
    return twin


class _Lif:
    """The NIR constants of one snnTorch neuron, and the factor its input needs (``1 / (1 - beta)``)."""

    def __init__(self, neuron: nn.Module, where: str) -> None:
        if not isinstance(neuron, MultiStepLeaky):
            raise ValueError(
                f"{where}: NIR export handles i2e_lightning's MultiStepLeaky neurons, got {type(neuron).__name__}"
            )
        beta = float(torch.as_tensor(neuron.beta).detach().clamp(0, 1).reshape(-1)[0])
        if torch.as_tensor(neuron.beta).numel() != 1 or torch.as_tensor(neuron.threshold).numel() != 1:
            raise ValueError(f"{where}: NIR export needs one beta and one threshold per layer")
        if neuron.reset_mechanism != "zero":
            raise ValueError(
                f"{where}: reset_mechanism={neuron.reset_mechanism!r} has no NIR LIF form (NIR resets to v_reset): "
                "train with reset_mechanism='zero'"
            )
        if not beta < 1.0:
            raise ValueError(f"{where}: beta={beta} does not leak (NIR LIF needs beta < 1; an IF neuron is beta = 1)")
        if not bool(torch.as_tensor(neuron.graded_spikes_factor).detach().eq(1).all()):
            raise ValueError(f"{where}: graded spikes (graded_spikes_factor != 1) have no NIR form")
        self.beta = beta
        self.threshold = float(torch.as_tensor(neuron.threshold).detach())
        self.inclusive = bool(getattr(neuron.spike_grad, "inclusive", False))
        self.input_scale = 1.0 / (1.0 - beta)

    def node(self, shape: Sequence[int], input_gain: float = 1.0):
        """The ``nir.LIF``; ``input_gain``: its input arrives multiplied by this (the threshold follows)."""
        nir = _nir()
        th = np.float32(self.threshold * input_gain)
        if self.inclusive:  # v >= th  <=>  v > (largest float32 below th)
            th = np.nextafter(th, np.float32(-np.inf), dtype=F32)

        def full(value: float) -> np.ndarray:
            return np.full(tuple(shape), value, dtype=F32)

        return nir.LIF(
            tau=full(1.0 / (1.0 - self.beta)),
            r=full(1.0),
            v_leak=full(0.0),
            v_threshold=full(float(th)),
            v_reset=full(0.0),
        )

    def key(self) -> tuple[float, float, bool]:
        return (self.beta, self.threshold, self.inclusive)


def fold_batchnorm(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[np.ndarray, np.ndarray]:
    """Weight and bias of ``bn(conv(x))`` as one convolution (eval statistics), in float64."""
    w = conv.weight.detach().double().cpu()
    b = conv.bias.detach().double().cpu() if conv.bias is not None else torch.zeros(w.shape[0], dtype=torch.float64)
    if bn is not None:
        if bn.running_mean is None or bn.running_var is None:
            raise ValueError("BatchNorm without running statistics cannot be folded: use track_running_stats=True")
        gamma = bn.weight.detach().double().cpu() if bn.weight is not None else torch.ones_like(b)
        shift = bn.bias.detach().double().cpu() if bn.bias is not None else torch.zeros_like(b)
        scale = gamma / torch.sqrt(bn.running_var.detach().double().cpu() + bn.eps)
        w = w * scale.view(-1, 1, 1, 1)
        b = (b - bn.running_mean.detach().double().cpu()) * scale + shift
    return w.numpy(), b.numpy()


def _pair(v: Any) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _conv_out(hw: tuple[int, int], kernel: Any, stride: Any, padding: Any) -> tuple[int, int]:
    k, s, p = _pair(kernel), _pair(stride), _pair(padding)
    return tuple((n + 2 * pp - kk) // ss + 1 for n, kk, ss, pp in zip(hw, k, s, p, strict=True))  # type: ignore[return-value]


class _GraphBuilder:
    def __init__(self) -> None:
        self.nodes: dict[str, Any] = {}
        self.edges: list[tuple[str, str]] = []

    def add(self, name: str, node: Any, sources: Iterable[str]) -> str:
        self.nodes[name] = node
        self.edges += [(s, name) for s in sources]
        return name

    def conv(
        self,
        name: str,
        sources: Iterable[str],
        conv: nn.Conv2d,
        bn: nn.BatchNorm2d | None,
        in_hw: tuple[int, int],
        scale: float,
    ) -> tuple[str, tuple[int, int]]:
        nir = _nir()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"{name}: only zero-padded convolutions with numeric padding export to NIR")
        w, b = fold_batchnorm(conv, bn)
        node = nir.Conv2d(
            input_shape=in_hw,
            weight=(w * scale).astype(F32),
            stride=_pair(conv.stride),
            padding=_pair(conv.padding),
            dilation=_pair(conv.dilation),
            groups=conv.groups,
            bias=(b * scale).astype(F32),
        )
        return self.add(name, node, sources), _conv_out(in_hw, conv.kernel_size, conv.stride, conv.padding)

    def average(
        self,
        name: str,
        sources: Iterable[str],
        channels: int,
        in_hw: tuple[int, int],
        kernel: Any,
        stride: Any,
        padding: Any,
    ) -> tuple[str, tuple[int, int]]:
        """Average pooling (zeros counted at padded borders, as PyTorch's default) as a ``Conv2d``.

        Each output channel reads only its own input channel (weights ``1 / k^2`` on the diagonal). A
        depthwise conv (``groups``) would be smaller, but nir's type check reads a conv's input channels
        from its weight and rejects it; NIR readers do not pad a ``SumPool2d``.
        """
        nir = _nir()
        k = _pair(kernel)
        weight = np.zeros((channels, channels, *k), dtype=F32)
        weight[np.arange(channels), np.arange(channels)] = 1.0 / (k[0] * k[1])
        node = nir.Conv2d(
            input_shape=in_hw,
            weight=weight,
            stride=_pair(stride),
            padding=_pair(padding),
            dilation=(1, 1),
            groups=1,
            bias=np.zeros(channels, dtype=F32),
        )
        return self.add(name, node, sources), _conv_out(in_hw, k, stride, padding)

    def graph(self):
        return _nir().NIRGraph(nodes=self.nodes, edges=self.edges)


def _pool_window(pool: nn.Module) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]] | None:
    if isinstance(pool, nn.Identity):
        return None
    if isinstance(pool, (SeqMaxPool2d, SeqAvgPool2d)):
        if getattr(pool, "ceil_mode", False) or (isinstance(pool, SeqMaxPool2d) and _pair(pool.dilation) != (1, 1)):
            raise ValueError("pooling with ceil_mode or dilation has no NIR form")
        if isinstance(pool, SeqAvgPool2d) and not pool.count_include_pad and _pair(pool.padding) != (0, 0):
            raise ValueError("padded average pooling must count the padding (count_include_pad=True) to export")
        stride = pool.stride if pool.stride is not None else pool.kernel_size
        return _pair(pool.kernel_size), _pair(stride), _pair(pool.padding)
    raise ValueError(f"pooling {type(pool).__name__} has no NIR export")


def _spiking_cnn(model: SpikingCNN, input_size: tuple[int, int]) -> tuple[_GraphBuilder, list[str]]:
    nir = _nir()
    g = _GraphBuilder()
    g.add("input", nir.Input(input_type={"input": np.array([model.in_channels, *input_size])}), [])
    src, hw, channels = "input", input_size, model.in_channels
    notes: list[str] = []
    for i, stage in enumerate(model.stages):
        lif = _Lif(stage.sn, f"stages.{i}.sn")
        window = _pool_window(stage.pool)
        pool_scale = 1.0
        if window is not None:
            (k, s, p) = window
            if p == (0, 0):  # SumPool2d with the 1/k^2 of the average folded into the conv
                pool_scale = 1.0 / (k[0] * k[1])
        conv, hw = g.conv(f"stages.{i}.conv", [src], stage.conv, stage.bn, hw, lif.input_scale * pool_scale)
        channels = stage.conv.out_channels
        src = conv
        if window is not None:
            k, s, p = window
            if isinstance(stage.pool, SeqMaxPool2d):
                notes.append(f"stages.{i}.pool: max pooling {k} exported as average pooling")
            if p == (0, 0):
                node = nir.SumPool2d(kernel_size=np.array(k), stride=np.array(s), padding=np.array(p))
                src = g.add(f"stages.{i}.pool", node, [src])
                hw = _conv_out(hw, k, s, p)
            else:
                src, hw = g.average(f"stages.{i}.pool", [src], channels, hw, k, s, p)
        src = g.add(f"stages.{i}.sn", lif.node((channels, *hw)), [src])
    feat_scale = 1.0
    if model.global_pool:  # mean over H, W: a sum pool, its 1 / (H W) goes into the next linear layer
        node = nir.SumPool2d(kernel_size=np.array(hw), stride=np.array(hw), padding=np.array([0, 0]))
        src = g.add("global_pool", node, [src])
        feat_scale = 1.0 / (hw[0] * hw[1])
        hw = (1, 1)
    src = g.add("flatten", nir.Flatten(input_type={"input": np.array([channels, *hw])}, start_dim=0, end_dim=-1), [src])
    if model.fc_hidden is not None:
        lif = _Lif(model.sn_hidden, "sn_hidden")
        src = g.add("fc_hidden", _affine(model.fc_hidden, feat_scale, lif.input_scale), [src])
        src = g.add("sn_hidden", lif.node((model.fc_hidden.out_features,)), [src])
        feat_scale = 1.0
    src = g.add("fc", _affine(model.fc, feat_scale), [src])
    g.add("output", nir.Output(output_type={"output": np.array([model.fc.out_features])}), [src])
    return g, notes


def _affine(linear: nn.Linear, input_scale: float = 1.0, output_scale: float = 1.0):
    """``nir.Affine`` of ``output_scale * linear(input_scale * x)`` (a mean's 1/(HW) in, a neuron's factor out)."""
    nir = _nir()
    w = linear.weight.detach().double().cpu().numpy() * (input_scale * output_scale)
    b = linear.bias.detach().double().cpu().numpy() if linear.bias is not None else np.zeros(w.shape[0])
    return nir.Affine(weight=w.astype(F32), bias=(b * output_scale).astype(F32))


def _ms_resnet(model: MSResNet, input_size: tuple[int, int]) -> tuple[_GraphBuilder, list[str]]:
    nir = _nir()
    g = _GraphBuilder()
    g.add("input", nir.Input(input_type={"input": np.array([model.in_channels, *input_size])}), [])
    lifs = [(n, _Lif(m, n)) for n, m in model.named_modules() if isinstance(m, MultiStepLeaky)]
    keys = {lif.key() for _, lif in lifs}
    if len(keys) != 1:
        raise ValueError(
            "MS-ResNet NIR export needs one beta/threshold for every neuron (the residual stream feeds many of "
            f"them and carries their 1/(1-beta) input factor), got {sorted(keys)}"
        )
    scale = lifs[0][1].input_scale  # every conv output ends up in some neuron's input: all carry the factor
    notes = []
    stem, hw = g.conv("conv1", ["input"], model.conv1, model.bn1, input_size, scale)
    window = _pool_window(model.maxpool)
    if window is not None:
        notes.append(f"maxpool {window[0]} stride {window[1]} padding {window[2]} exported as average pooling")
        stem, hw = g.average("maxpool", [stem], model.conv1.out_channels, hw, *window)
    stream = [stem]  # the terms whose sum is the residual stream (membrane shortcut)
    channels = model.conv1.out_channels
    for lname in ("layer1", "layer2", "layer3", "layer4"):
        for bi, block in enumerate(getattr(model, lname)):
            p = f"{lname}.{bi}"
            if not isinstance(block, (MSBasicBlock, MSBottleneck)):
                raise ValueError(f"{p}: NIR export knows MSBasicBlock and MSBottleneck, got {type(block).__name__}")
            # LIF -> conv -> BN, two times (basic) or three (bottleneck); the last conv's output joins the stream
            stages = [(block.conv1, block.bn1), (block.conv2, block.bn2)]
            if isinstance(block, MSBottleneck):
                stages.append((block.conv3, block.bn3))
            sn1 = g.add(f"{p}.sn1", lifs[0][1].node((channels, *hw)), stream)
            src, hw2 = sn1, hw
            for k, (conv, bn) in enumerate(stages, start=1):
                if k > 1:
                    src = g.add(f"{p}.sn{k}", lifs[0][1].node((stages[k - 2][0].out_channels, *hw2)), [src])
                src, hw2 = g.conv(f"{p}.conv{k}", [src], conv, bn, hw2, scale)
            c2, last = src, stages[-1][0]
            if block.downsample is None:
                stream = [c2, *stream]
            else:
                ds = block.downsample
                if not (isinstance(ds, nn.Sequential) and len(ds) == 3 and isinstance(ds[1], SeqConv2d)):
                    raise ValueError(f"{p}.downsample: expected (LIF, conv1x1, BN)")
                # its LIF sees the block input with the same constants as sn1 (checked above): reuse sn1's spikes
                d, _ = g.conv(
                    f"{p}.downsample", [sn1], ds[1], ds[2] if isinstance(ds[2], SeqBatchNorm2d) else None, hw, scale
                )
                stream = [c2, d]
            hw, channels = hw2, last.out_channels
    if not isinstance(model.avgpool, SeqAdaptiveAvgPool2d) or _pair(model.avgpool.output_size) != (1, 1):
        raise ValueError("MS-ResNet NIR export expects the global average pool (output size 1x1)")
    # global mean: a SumPool2d over the map; the neuron after it sees H*W times its input, so its threshold
    # is H*W times higher (the LIF is linear below threshold and resets to zero; exact when H*W is a power of 2)
    node = nir.SumPool2d(kernel_size=np.array(hw), stride=np.array(hw), padding=np.array([0, 0]))
    pooled = g.add("avgpool", node, stream)
    sn = g.add("sn1", lifs[0][1].node((channels, 1, 1), input_gain=hw[0] * hw[1]), [pooled])
    flat = g.add(
        "flatten", nir.Flatten(input_type={"input": np.array([channels, 1, 1])}, start_dim=0, end_dim=-1), [sn]
    )
    fc = g.add("fc", _affine(model.fc), [flat])
    g.add("output", nir.Output(output_type={"output": np.array([model.fc.out_features])}), [fc])
    return g, notes


def export_nir(model: nn.Module, input_size: Sequence[int] | None = None, *, metadata: dict[str, Any] | None = None):
    """The NIR graph (``nir.NIRGraph``) of a trained ``spiking_cnn`` or ``ms_resnet18/34``, one sample per step.

    ``input_size``: ``(H, W)`` of the events (default: the model's ``input_size`` for a SpikingCNN;
    needed for an MS-ResNet, whose layer shapes depend on it). Returns the graph; notes about
    replaced operations are in ``graph.metadata["i2e.notes"]``.
    """
    if not isinstance(model, SUPPORTED):
        raise ValueError(
            f"NIR export supports SpikingCNN (spiking_cnn) and MSResNet (ms_resnet18/34/50/101/152), got {type(model).__name__}"
        )
    if input_size is None:
        if not isinstance(model, SpikingCNN):
            raise ValueError("an MS-ResNet's NIR graph needs input_size=(H, W) of the events it will see")
        input_size = model.input_size
    size = (int(input_size[0]), int(input_size[1]))
    if min(size) < 1:
        raise ValueError(f"input_size must be positive (H, W), got {input_size!r}")
    if isinstance(model, SpikingCNN) and not model.global_pool and size != tuple(model.input_size):
        raise ValueError(
            f"this SpikingCNN flattens {model.input_size} maps: export it with input_size={model.input_size}"
        )
    model = model.eval()
    with torch.no_grad():
        builder, notes = _spiking_cnn(model, size) if isinstance(model, SpikingCNN) else _ms_resnet(model, size)
    graph = builder.graph()
    graph.metadata.update(
        {
            "i2e.arch": type(model).__name__,
            "i2e.input_size": list(size),
            "i2e.dt": 1.0,
            "i2e.readout": "mean of the output over the T timesteps",
            "i2e.notes": notes,
            **(metadata or {}),
        }
    )
    return graph


def write_nir(graph, path: str | Path) -> Path:
    """Write ``graph`` to ``path`` (HDF5, ``.nir``) atomically; returns the path."""
    nir = _nir()
    out = Path(path)
    if out.suffix != ".nir":
        raise ValueError(f"the output file must end in .nir, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    nir.write(tmp, graph)
    tmp.replace(out)
    return out


def layer_count(graph) -> dict[str, int]:
    """How many nodes of each NIR type the graph holds (for reports)."""
    counts: dict[str, int] = {}
    for node in graph.nodes.values():
        counts[type(node).__name__] = counts.get(type(node).__name__, 0) + 1
    return dict(sorted(counts.items()))


__all__ = ["export_nir", "fold_batchnorm", "layer_count", "nir_compatible", "write_nir"]
