#!/usr/bin/env python3
"""Re-runs every row's recorded eval command (bench/results/omniglot/*.json) on its committed checkpoint with
the local build and prints the recorded and the re-measured figure side by side. Run from the repository root:

    python3 bench/reproduce/recheck.py [--threads N] [--metafew build/metafew]

Exit status 1 when a command fails; differences in the figures are printed, not judged (kernel changes may
move the last digits by rounding)."""
import argparse
import glob
import json
import os
import shlex
import subprocess
import sys
import time

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--metafew", default="build/metafew")
parser.add_argument("--omniglot", default="../shared/data/omniglot")
args = parser.parse_args()

failed = False
for path in sorted(glob.glob("bench/results/omniglot/*.json")):
    row = json.load(open(path))
    cmd = row.get("eval_command", "")
    if not cmd.startswith("metafew eval "):
        continue
    argv = shlex.split(cmd.replace("$OMNIGLOT", args.omniglot))
    argv[0] = args.metafew
    if "--threads" in argv:
        argv[argv.index("--threads") + 1] = str(args.threads)
    argv.append("--json")
    start = time.time()
    out = subprocess.run(argv, capture_output=True, text=True)
    recorded = row["result"].get("accuracy", row["result"].get("mse"))
    if out.returncode != 0:
        failed = True
        print(f"{row['row']:32s} recorded {recorded:.5f}  FAILED: {out.stderr.strip()[-200:]}")
        continue
    now = json.loads(out.stdout.strip().splitlines()[-1])
    value = now.get("accuracy", now.get("mse"))
    print(f"{row['row']:32s} recorded {recorded:.5f}  now {value:.5f}  ({time.time() - start:.0f} s)", flush=True)
sys.exit(1 if failed else 0)
