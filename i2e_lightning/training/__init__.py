"""Training: the LightningModule, checkpoint helpers. Imports models only (not data)."""

from .checkpoint import AtomicCheckpointIO, load_init_weights, read_checkpoint
from .module import SpikingClassifier, load_classifier

__all__ = ["AtomicCheckpointIO", "SpikingClassifier", "load_classifier", "load_init_weights", "read_checkpoint"]
