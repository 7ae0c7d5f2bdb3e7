"""Reads and writes metafew checkpoint files in Python, from the format's description alone (Note
[Checkpoint format] and Note [Checkpoint checksum] in src/io/checkpoint.cpp): the probe uses it to write
headers edited with a valid checksum, the way a buggy tool or a hand edit would."""
import json
import struct

MASK = (1 << 64) - 1
K = 0x9E3779B97F4A7C15
LANES = (0x243F6A8885A308D3, 0x13198A2E03707345, 0xA4093822299F31D1, 0x082EFA98EC4E6C89)


def _mix64(z):
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def checksum(data):
    v = list(LANES)
    padded = data + b"\0" * (-len(data) % 8)
    for j, (w,) in enumerate(struct.iter_unpack("<Q", padded)):
        x = ((v[j % 4] ^ w) * K) & MASK
        v[j % 4] = ((x << 31) | (x >> 33)) & MASK
    h = _mix64(len(data) ^ K)
    for lane in v:
        h = _mix64(h ^ lane)
    return h


def read_checkpoint(blob):
    """(header, [(name, dtype, shape, bytes)]) of a checkpoint file's contents; checks the checksum."""
    assert blob[:8] == b"METAFEW\0", "not a metafew checkpoint"
    (hlen,) = struct.unpack_from("<Q", blob, 12)
    doc = json.loads(blob[20:20 + hlen])
    start = (20 + hlen + 63) // 64 * 64
    end = start + doc["data_bytes"]
    assert struct.unpack_from("<Q", blob, end)[0] == checksum(blob[:end]), "checksum mismatch"
    tensors = [(t["name"], t["dtype"], t["shape"], blob[start + t["offset"]:start + t["offset"] + t["bytes"]])
               for t in doc["tensors"]]
    return doc["header"], tensors


def write_checkpoint(header, tensors, version=1):
    """A checkpoint file's bytes for a header (any JSON) and tensors [(name, dtype, shape, raw bytes)]."""
    table, data = [], b""
    for name, dtype, shape, raw in tensors:
        data += b"\0" * (-len(data) % 64)
        table.append({"name": name, "dtype": dtype, "shape": shape, "offset": len(data), "bytes": len(raw)})
        data += raw
    doc = json.dumps({"header": header, "tensors": table, "data_bytes": len(data)}).encode()
    head = b"METAFEW\0" + struct.pack("<IQ", version, len(doc)) + doc
    head += b"\0" * (-len(head) % 64)
    body = head + data
    return body + struct.pack("<Q", checksum(body))
