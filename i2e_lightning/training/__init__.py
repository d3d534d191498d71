"""Training: the LightningModule, checkpoint helpers. Imports models only (not data)."""

from .callbacks import FiniteLossGuard, NonFiniteError
from .checkpoint import AtomicCheckpointIO, load_init_weights, read_checkpoint
from .module import SpikingClassifier, load_classifier

__all__ = [
    "AtomicCheckpointIO",
    "FiniteLossGuard",
    "NonFiniteError",
    "SpikingClassifier",
    "load_classifier",
    "load_init_weights",
    "read_checkpoint",
]
