#!/usr/bin/env python3
"""Debian's Fashion-MNIST (package dataset-fashion-mnist) as a class-per-folder dataset for metafew.

    python3 bench/fashion_mnist/to_folders.py OUT [--per-class N] [--from /usr/share/datasets/fashion-mnist]

writes OUT/<class>/<index>.png: the ten clothing classes as one flat folder, the way a user's own data comes
(no train/val/test folders), with the training and test files' images together, at most N per class (default
all 7,000) in file order. The images are 28x28 grayscale, light garments on black, stored as they are.
Standard library only (gzip, struct, zlib): the IDX files are parsed and the PNGs written here.
"""
import argparse
import gzip
import os
import struct
import sys
import zlib

CLASSES = ["tshirt_top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle_boot"]


def read_idx(path, kind):
    """The payload of an IDX file: images (count, rows, cols, bytes) or labels (count, bytes)."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    want = {"images": 0x00000803, "labels": 0x00000801}[kind]
    if magic != want:
        sys.exit(f"{path}: not an IDX {kind} file (magic {magic:#010x}, expected {want:#010x})")
    if kind == "images":
        count, rows, cols = struct.unpack(">III", data[4:16])
        if len(data) != 16 + count * rows * cols:
            sys.exit(f"{path}: {len(data)} bytes, expected {16 + count * rows * cols} for {count} images of {rows}x{cols}")
        return count, rows, cols, data[16:]
    count = struct.unpack(">I", data[4:8])[0]
    if len(data) != 8 + count:
        sys.exit(f"{path}: {len(data)} bytes, expected {8 + count} for {count} labels")
    return count, data[8:]


def png_gray(pixels, width, height):
    """An 8-bit grayscale PNG of `pixels` (row-major bytes), filter type 0 on every row."""
    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + pixels[y * width:(y + 1) * width] for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="folder to create (one subfolder per class)")
    ap.add_argument("--per-class", type=int, default=0, help="at most this many images per class (0: all)")
    ap.add_argument("--from", dest="src", default="/usr/share/datasets/fashion-mnist",
                    help="folder holding the four .gz IDX files")
    args = ap.parse_args()
    if os.path.exists(args.out) and os.listdir(args.out):
        sys.exit(f"{args.out} exists and is not empty; remove it or choose another folder")
    counts = [0] * len(CLASSES)
    for stem in ("train", "t10k"):
        images = os.path.join(args.src, f"{stem}-images-idx3-ubyte.gz")
        labels = os.path.join(args.src, f"{stem}-labels-idx1-ubyte.gz")
        for p in (images, labels):
            if not os.path.exists(p):
                sys.exit(f"{p} does not exist: install Debian's dataset-fashion-mnist (apt-get install dataset-fashion-mnist)"
                         " or pass --from FOLDER")
        n, rows, cols, pix = read_idx(images, "images")
        nl, lab = read_idx(labels, "labels")
        if n != nl:
            sys.exit(f"{images} holds {n} images but {labels} {nl} labels")
        for i in range(n):
            c = lab[i]
            if c >= len(CLASSES):
                sys.exit(f"{labels}: label {c} of image {i} is not one of the 10 classes")
            if args.per_class and counts[c] >= args.per_class:
                continue
            folder = os.path.join(args.out, CLASSES[c])
            if counts[c] == 0:
                os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, f"{counts[c]:05d}.png"), "wb") as f:
                f.write(png_gray(pix[i * rows * cols:(i + 1) * rows * cols], cols, rows))
            counts[c] += 1
    print(f"{args.out}: {sum(counts)} images in {len(CLASSES)} class folders ("
          + ", ".join(f"{name} {k}" for name, k in zip(CLASSES, counts)) + ")")


if __name__ == "__main__":
    main()
