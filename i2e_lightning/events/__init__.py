"""Events on disk: packed rows, HDF5 files, the published npz / Hugging Face formats, sparse x,y,t,p.

Import order follows the package layering: this package uses the converter only (and the data
package lazily, in the ``convert`` command).
"""

from .dataset import EventFileDataset
from .hdf5 import EventFileMeta, EventH5Reader, EventH5Writer
from .hf import ParquetEvents, decode_payload, decode_sample, encode_payload, encode_sample, write_parquet
from .hub import HF_REPO, hub_parquet_files, parse_hub_path
from .npz import NpzFolder, load_npz, save_npz, write_npz_folder
from .packed import (
    PackedEvents,
    as_event_batch,
    convert_packed,
    pack_events,
    pack_rows,
    packed_size,
    unpack_events,
    unpack_events_np,
)
from .sparse import TONIC_DTYPE, TONIC_INT64_DTYPE, dense_to_sparse, sensor_size, sparse_to_dense

__all__ = [
    "HF_REPO",
    "TONIC_DTYPE",
    "TONIC_INT64_DTYPE",
    "as_event_batch",
    "convert_packed",
    "EventFileDataset",
    "EventFileMeta",
    "EventH5Reader",
    "EventH5Writer",
    "NpzFolder",
    "PackedEvents",
    "ParquetEvents",
    "decode_payload",
    "decode_sample",
    "dense_to_sparse",
    "encode_payload",
    "encode_sample",
    "hub_parquet_files",
    "load_npz",
    "pack_events",
    "pack_rows",
    "parse_hub_path",
    "packed_size",
    "save_npz",
    "sensor_size",
    "sparse_to_dense",
    "unpack_events",
    "unpack_events_np",
    "write_npz_folder",
    "write_parquet",
]
