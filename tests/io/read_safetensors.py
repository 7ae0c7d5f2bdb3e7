#!/usr/bin/env python3
"""An independent reader of safetensors files (json and struct only), for the test that metafew's export is
read by something other than metafew: it parses the file the way the format's README describes and prints,
as JSON, each tensor's dtype, shape, element count, first and last element and the float64 sum of its
elements in file order, plus the metadata. Usage: read_safetensors.py FILE"""
import json
import struct
import sys

SIZES = {"F32": ("f", 4), "F64": ("d", 8), "I32": ("i", 4)}


def main(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    buffer = data[8 + n:]
    metadata = header.pop("__metadata__", {})
    out = {"tensors": {}, "metadata": metadata}
    end = 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        code, size = SIZES[info["dtype"]]
        begin, stop = info["data_offsets"]
        assert begin == end, f"{name}: gap or overlap at {begin}"
        end = stop
        count = 1
        for d in info["shape"]:
            count *= d
        assert stop - begin == count * size, f"{name}: {stop - begin} bytes for {count} elements"
        values = struct.unpack(f"<{count}{code}", buffer[begin:stop])
        total = 0.0
        for v in values:
            total += v
        out["tensors"][name] = {"dtype": info["dtype"], "shape": info["shape"], "count": count,
                                "first": values[0] if values else None, "last": values[-1] if values else None,
                                "sum": total}
    assert end == len(buffer), f"tensors cover {end} of {len(buffer)} bytes"
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
