"""Reads PyTorch's legacy (non-zip) checkpoint format without torch: the
pickled state dict refers to storages by key; their raw bytes follow."""
import pickle
import struct
from collections import OrderedDict

import numpy as np

_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
           "LongStorage": np.int64, "IntStorage": np.int32}


class _Storage:
    def __init__(self, dtype, key):
        self.dtype, self.key = dtype, key


def _rebuild(storage, offset, size, stride, *_):
    return (storage, offset, tuple(size), tuple(stride))


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if name.endswith("Storage"):
            return name
        if name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        raise pickle.UnpicklingError(f"unexpected class {module}.{name}")

    def persistent_load(self, pid):
        _, storage_type, key, _location, _size = pid[:5]
        return _Storage(_DTYPES[storage_type], key)


def load_state_dict(path):
    """name -> numpy array, with any DataParallel 'module.' prefix removed."""
    with open(path, "rb") as f:
        for _ in range(3):  # magic number, protocol version, system info
            pickle.load(f)
        state = _Unpickler(f).load()
        keys = pickle.load(f)
        dtypes = {v[0].key: v[0].dtype for v in state.values()}
        raw = {}
        for k in keys:
            (n,) = struct.unpack("<q", f.read(8))
            raw[k] = np.frombuffer(f.read(n * np.dtype(dtypes[k]).itemsize), dtype=dtypes[k])
    out = OrderedDict()
    for name, (storage, offset, size, stride) in state.items():
        flat = raw[storage.key]
        count = int(np.prod(size)) if size else 1
        arr = np.lib.stride_tricks.as_strided(flat[offset:], shape=size,
                                              strides=[s * flat.itemsize for s in stride]) if size else flat[offset:offset + 1]
        out[name.removeprefix("module.")] = np.array(arr).reshape(size) if count else np.zeros(size)
    return out
