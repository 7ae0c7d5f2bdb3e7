#!/usr/bin/env python3
"""metafew's exported weights in PyTorch: a conv-4 module whose parameter names are the export's (so
load_state_dict takes the file as it is), and the few lines that reproduce `metafew adapt` for a ProtoNets
model (batch norm with the support set's statistics, adapt's default). README, "Weights in and out", shows
this file; bench/results/weights.md records it against metafew's own probabilities.

  metafew export --checkpoint RUN --out model.safetensors
  python3 bench/pytorch_adapt.py model.safetensors SUPPORT_DIR QUERY_DIR   # one line per query image

Reads safetensors with json, struct and torch.frombuffer (Debian has no safetensors package); with it,
safetensors.torch.load_file(path) gives the same tensors. Images must already have the model's size.
"""
import json
import pathlib
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def load_safetensors(path):
    data = bytearray(pathlib.Path(path).read_bytes())
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        assert info["dtype"] == "F32", name
        tensors[name] = torch.frombuffer(data, dtype=torch.float32, offset=8 + n + begin,
                                         count=(end - begin) // 4).reshape(info["shape"]).clone()
    return tensors, metadata


class Block(torch.nn.Module):
    """3x3 conv, batch norm with the statistics of one batch (metafew keeps no running statistics), 2x2
    max-pool (or a stride-2 conv), ReLU."""

    def __init__(self, cin, cout, max_pool):
        super().__init__()
        self.conv = torch.nn.Conv2d(cin, cout, 3, stride=1 if max_pool else 2, padding=1)
        self.bn = torch.nn.BatchNorm2d(cout, track_running_stats=False)
        self.max_pool = max_pool

    def forward(self, x, stats_from):
        """x normalised with the batch statistics of stats_from (support mode: the support batch)."""
        x, s = self.conv(x), self.conv(stats_from)
        mean = s.mean((0, 2, 3), keepdim=True)
        var = s.var((0, 2, 3), unbiased=False, keepdim=True)
        x = (x - mean) / torch.sqrt(var + 1e-5) * self.bn.weight[:, None, None] + self.bn.bias[:, None, None]
        return F.relu(F.max_pool2d(x, 2) if self.max_pool else x)


class Conv4(torch.nn.Module):
    def __init__(self, channels, filters, max_pool=True, features="flatten"):
        super().__init__()
        for b in range(1, 5):
            setattr(self, f"block{b}", Block(channels if b == 1 else filters, filters, max_pool))
        self.features = features

    def forward(self, x, support):
        for b in range(1, 5):
            block = getattr(self, f"block{b}")
            x, support = block(x, support), block(support, support)
        return x.mean((2, 3)) if self.features == "mean" else x.flatten(1)


def load_images(files, pre, cfg):
    mode = "L" if pre["channels"] == 1 else "RGB"
    arrays = []
    for f in files:
        a = np.asarray(Image.open(f).convert(mode), dtype=np.float32)
        assert a.shape[:2] == (pre["height"], pre["width"]), f"{f}: resize it to the model's size first"
        a = 255.0 - a if pre["invert"] else a
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    x = torch.from_numpy(np.stack(arrays) / np.float32(255.0))
    if cfg.get("normalize") == "channel":  # metafew's input normalisation (colour models by default)
        mean = torch.tensor([float(v) for v in cfg["input_mean"].split(",")])[None, :, None, None]
        std = torch.tensor([float(v) for v in cfg["input_std"].split(",")])[None, :, None, None]
        x = (x - mean) / std
    return x


def main(model_path, support_dir, query_dir):
    weights, meta = load_safetensors(model_path)
    cfg, pre = json.loads(meta["metafew_config"]), json.loads(meta["metafew_preprocessing"])
    assert cfg["model"] == "conv4" and cfg["algo"] == "protonet"
    model = Conv4(pre["channels"], cfg["filters"], cfg["max_pool"], cfg["features"])
    model.load_state_dict(weights)  # strict: every name and shape must match
    classes = sorted(p.name for p in pathlib.Path(support_dir).iterdir() if p.is_dir())
    support_files, support_labels = [], []
    for label, c in enumerate(classes):
        for f in sorted((pathlib.Path(support_dir) / c).iterdir()):
            support_files.append(f)
            support_labels.append(label)
    query_files = sorted(p for p in pathlib.Path(query_dir).rglob("*") if p.is_file())
    with torch.no_grad():
        xs, xq = load_images(support_files, pre, cfg), load_images(query_files, pre, cfg)
        fs, fq = model(xs, xs), model(xq, xs)
        labels = torch.tensor(support_labels)
        prototypes = torch.stack([fs[labels == k].mean(0) for k in range(len(classes))])
        probabilities = torch.softmax(-torch.cdist(fq, prototypes) ** 2, dim=1)
    for f, p in zip(query_files, probabilities):
        print(json.dumps({"file": str(f), "probabilities": dict(zip(classes, p.tolist()))}))


if __name__ == "__main__":
    main(*sys.argv[1:4])
