"""The snnTorch LIF driver: same dynamics as stepping snntorch.Leaky by hand and as SpikingJelly's LIFNode."""

from __future__ import annotations

import copy
import pickle

import pytest
import snntorch as snn
import torch
from snntorch._neurons.neurons import SpikingNeuron

from i2e_lightning.models import ATan, MultiStepLeaky

pytestmark = pytest.mark.usefixtures("one_thread")


def _stock_leaky_loop(x: torch.Tensor, spike_grad) -> torch.Tensor:
    """Plain snnTorch usage: a stock Leaky stepped over T with an explicit membrane."""
    leaky = snn.Leaky(beta=0.5, threshold=1.0, spike_grad=spike_grad, reset_mechanism="zero")
    mem = leaky.reset_mem()
    out = []
    for t in range(x.shape[0]):
        spk, mem = leaky(x[t], mem)
        out.append(spk)
    return torch.stack(out)


@pytest.mark.parametrize("shape", [(1, 16), (4, 2, 5), (6, 3, 2, 7, 5)])
def test_matches_stock_snntorch_leaky(shape):
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(shape, generator=g) * 1.5).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    w = torch.randn(shape, generator=g)
    ours = MultiStepLeaky()(x)
    ref = _stock_leaky_loop(x2, ATan())
    assert torch.equal(ours, ref)
    assert 0 < ours.mean() < 1
    (ours * w).sum().backward()
    (ref * w).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("shape", [(8, 3, 4), (5, 2, 3, 6, 7)])
def test_matches_spikingjelly_lifnode(shape):
    sj_ref = pytest.importorskip("i2e_lightning.models.spikingjelly_ref")
    g = torch.Generator().manual_seed(2)
    x = (torch.randn(shape, generator=g) * 1.5).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    w = torch.randn(shape, generator=g)
    ours = MultiStepLeaky()(x)
    node = sj_ref._lif()
    ref = node(x2)
    assert torch.equal(ours, ref)
    (ours * w).sum().backward()
    (ref * w).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-5, atol=1e-6)


def test_hand_computed_sequence():
    # mem: 0.6 -> 0.3+0.6=0.9 -> 0.45+0.6=1.05 fires -> reset, 0+0.6 -> 0.3+1.0=1.3 fires
    x = torch.tensor([0.6, 0.6, 0.6, 0.6, 1.0]).view(5, 1)
    assert MultiStepLeaky()(x).flatten().tolist() == [0, 0, 1, 0, 1]


def test_firing_edge_inclusive_by_default():
    x = torch.tensor([[1.0], [0.6]])  # mem reaches exactly the threshold at t=0
    assert MultiStepLeaky()(x).flatten().tolist() == [1, 0]  # SpikingJelly / official: v >= threshold
    assert MultiStepLeaky(spike_grad=ATan(inclusive=False))(x).flatten().tolist() == [0, 1]  # snnTorch's >


def test_atan_surrogate_gradient():
    x = torch.linspace(-2, 2, 41, requires_grad=True)
    ATan(alpha=2.0)(x).sum().backward()
    expected = 1.0 / (1 + (torch.pi * x.detach()) ** 2)
    torch.testing.assert_close(x.grad, expected)


def test_no_state_between_calls_and_no_instance_leak():
    lif = MultiStepLeaky()
    a = torch.rand(4, 2, 3) * 2
    b = torch.rand(4, 2, 5) * 2
    first = lif(a)
    lif(b)
    assert torch.equal(lif(a), first)
    assert lif.mem.numel() == 0
    n = len(SpikingNeuron.instances)
    for _ in range(5):
        MultiStepLeaky()
    assert len(SpikingNeuron.instances) == n


def test_picklable():
    lif = MultiStepLeaky(beta=0.25, spike_grad=ATan(alpha=3.0))
    for clone in (pickle.loads(pickle.dumps(lif)), copy.deepcopy(lif)):
        assert clone.spike_grad.alpha == 3.0
        x = torch.rand(3, 4) * 2
        assert torch.equal(clone(x), lif(x))


def test_same_dynamics_follows_state_dict():
    from i2e_lightning.models import ms_resnet18

    m = ms_resnet18(num_classes=3).eval()
    block = m.layer2[0]
    assert block.sn1.same_dynamics(block.downsample[0])
    x = torch.rand(2, 2, 64, 8, 8) * 2
    with torch.no_grad():
        shared = block(x)
        explicit = block.bn2(block.conv2(block.sn2(block.bn1(block.conv1(block.sn1(x)))))) + block.downsample(x)
    assert torch.equal(shared, explicit)
    sd = m.state_dict()
    sd["layer2.0.downsample.0.threshold"] = torch.tensor(0.7)
    m.load_state_dict(sd)
    assert not block.sn1.same_dynamics(block.downsample[0])
    with torch.no_grad():
        assert not torch.equal(block(x), shared)  # the shortcut now fires at 0.7: computed on its own
    assert not MultiStepLeaky(learn_threshold=True).same_dynamics(MultiStepLeaky(learn_threshold=True))
    assert not MultiStepLeaky().same_dynamics(MultiStepLeaky(spike_grad=ATan(alpha=3.0)))
