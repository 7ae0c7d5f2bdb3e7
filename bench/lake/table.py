#!/usr/bin/env python3
"""Rebuilds the table of bench/results/lake_validation.md from bench/results/lake/*.json (written by
bench/lake/validate.sh). Only the text between '<!-- table:validation -->' and '<!-- end table -->' changes."""
import glob
import json
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOC = os.path.join(ROOT, "bench", "results", "lake_validation.md")
COMMON = ("--algo protonet --shots 1 --schedule step --schedule-gamma 0.5 --train-split background-train "
          "--val-split background-val --test-episodes-within alphabet --test-ways 20 --test-shots 1 "
          "--test-queries 5 --val-every 1000 --val-episodes 200")

rows = []
for path in sorted(glob.glob(os.path.join(ROOT, "bench", "results", "lake", "*.json"))):
    r = json.load(open(path))
    words, common = r["flags"].split(), COMMON.split()
    pairs = [" ".join(words[i:i + 2]) for i in range(0, len(words), 2)]  # every flag here takes a value
    shared = {" ".join(common[i:i + 2]) for i in range(0, len(common), 2)}
    flags = " ".join(p for p in pairs if p not in shared)
    rows.append((r["variant"], flags, r))
order = ["base", "rotated", "rotated_within", "rotated_affine", "rotated_56px", "rotated_128f", "rotated_long",
         "rotated_affine_long"]
rows.sort(key=lambda x: (order.index(x[0]) if x[0] in order else len(order), x[0]))
lines = ["| variant | flags beyond the common ones | background-val, 20-way 1-shot within an alphabet (95% CI) | "
         "training time (2 threads) |", "| --- | --- | --- | --- |"]
for v, flags, r in rows:
    m = round(r["training_seconds"] / 60)
    lines.append(f"| {v} | `{flags}` | {100 * r['accuracy']:.2f} +- {100 * r['ci95']:.2f} | {m} min |")
text = open(DOC).read()
pattern = re.compile(r"(<!-- table:validation -->\n).*?(<!-- end table -->)", re.S)
if not pattern.search(text):
    sys.exit(f"table.py: {DOC} has no '<!-- table:validation -->' ... '<!-- end table -->' block")
text = pattern.sub(lambda m: m.group(1) + "\n".join(lines) + "\n" + m.group(2), text)
open(DOC, "w").write(text)
print(f"table.py: {len(rows)} variants written to {os.path.relpath(DOC, ROOT)}")
