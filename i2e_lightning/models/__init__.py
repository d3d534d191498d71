"""Spiking networks on snnTorch neurons: MS-ResNet18/34/50/101/152 (official I2E layout) and a small spiking CNN.

All models take events ``[T, B, C, H, W]`` (float, time first) and return logits ``[B, num_classes]``
averaged over T; neuron states start from zero on every forward.
"""

from .checkpoint import describe_state_diff, network_state, read_checkpoint
from .cnn import SpikingCNN, spiking_cnn
from .ms_resnet import (
    MSBasicBlock,
    MSBottleneck,
    MSResNet,
    ms_resnet18,
    ms_resnet34,
    ms_resnet50,
    ms_resnet101,
    ms_resnet152,
)
from .neurons import ATan, ATanSpike, MultiStepLeaky
from .official import load_official, official_state_dict, save_official, to_official_state_dict
from .registry import ModelEntry, create_from_hparams, create_model, list_models, model_entry, register_model
from .utils import lif_layers, replace_head, set_spike_recording, spike_rates

__all__ = [
    "ATan",
    "ATanSpike",
    "MSBasicBlock",
    "MSBottleneck",
    "MSResNet",
    "ModelEntry",
    "MultiStepLeaky",
    "SpikingCNN",
    "create_from_hparams",
    "create_model",
    "describe_state_diff",
    "lif_layers",
    "list_models",
    "load_official",
    "model_entry",
    "ms_resnet18",
    "ms_resnet34",
    "ms_resnet50",
    "ms_resnet101",
    "ms_resnet152",
    "network_state",
    "official_state_dict",
    "read_checkpoint",
    "register_model",
    "replace_head",
    "save_official",
    "set_spike_recording",
    "spike_rates",
    "spiking_cnn",
    "to_official_state_dict",
]
