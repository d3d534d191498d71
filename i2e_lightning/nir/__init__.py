"""NIR (Neuromorphic Intermediate Representation) export of trained spiking networks."""

from .export import export_nir, fold_batchnorm, layer_count, nir_compatible, write_nir
from .simulate import load_norse, run_norse

__all__ = ["export_nir", "fold_batchnorm", "layer_count", "load_norse", "nir_compatible", "run_norse", "write_nir"]
