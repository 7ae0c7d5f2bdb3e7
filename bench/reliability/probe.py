#!/usr/bin/env python3
"""Hostile-input and fault probe of the metafew binary (issue 25): runs each kind of bad input or fault many
times and counts the outcomes, for bench/results/reliability.md.

    python3 bench/reliability/probe.py [--metafew build/metafew] [--quick]

Every probe must end in one of the expected ways (a clear error: exit 1 or 2, stderr starting with
"error: " and naming the file, key or flag; or, for faults, nothing lost: a resume bit-identical to an
uninterrupted run). A signal, a raw library message, a bare std::bad_alloc or a lost result counts as a
failure and is printed. Seeded: the same probes every time. Takes about 10 minutes on 2 cores (--quick: 2).
"""
import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ap = argparse.ArgumentParser()
ap.add_argument("--metafew", default=os.path.join(ROOT, "build", "metafew"))
ap.add_argument("--quick", action="store_true", help="fewer trials per kind")
args = ap.parse_args()
MF = args.metafew
RNG = random.Random(25)
SMALL = ["--data", "builtin:glyphs", "--filters", "8", "--queries", "5", "--meta-batch", "2", "--threads", "2",
         "--val-episodes", "5", "--log-every", "5"]
work = tempfile.mkdtemp(prefix="metafew-probe-")
rows = []  # (kind, tried, expected outcome, held, failures)


def run(argv, timeout=120, env=None):
    p = subprocess.run([MF] + argv, capture_output=True, text=True, timeout=timeout, cwd=work,
                       env=env or os.environ)
    return p.returncode, p.stdout, p.stderr


def clear_error(code, err, names=()):
    """Exit 1 or 2 (never a signal), an 'error: ' line, no raw library text, and each of `names` in it."""
    if code not in (1, 2):
        return False, f"exit {code}"
    if "error: " not in err:
        return False, "no error line"
    for raw in ("[json.exception", "std::bad_alloc", "basic_string", "Argument '", "failed to parse"):
        if raw in err:
            return False, f"raw message: {err.strip()[:120]}"
    for n in names:
        if n not in err:
            return False, f"does not name {n!r}: {err.strip()[:160]}"
    return True, ""


def record(kind, expected, results):
    failures = [r for ok, r in results if not ok]
    rows.append((kind, len(results), expected, len(results) - len(failures), failures[:3]))
    print(f"{kind}: {len(results) - len(failures)}/{len(results)}", flush=True)
    for f in failures[:3]:
        print("   ", f, flush=True)


def params_digest(path):
    with open(path, "rb") as f:
        data = f.read()
    # The parameters and optimizer tensors follow the header; the header holds no time, so the whole file
    # is compared (two runs with the same settings and iteration write the same bytes).
    return hashlib.sha256(data).hexdigest()


n = (lambda full, quick: quick if args.quick else full)

# ---- a trained run to damage -------------------------------------------------------------------------
base = os.path.join(work, "base")
code, _, err = run(["meta-train"] + SMALL + ["--algo", "protonet", "--iterations", "10", "--out", base])
assert code == 0, err
good = open(os.path.join(base, "last"), "rb").read()

# 1. truncated checkpoints
res = []
for cut in sorted(RNG.sample(range(1, len(good)), n(66, 12))):
    p = os.path.join(work, "trunc.mfck")
    open(p, "wb").write(good[:cut])
    code, _, err = run(["eval", "--checkpoint", p, "--episodes", "2"])
    res.append(clear_error(code, err, [p]))
record("truncated checkpoint (eval)", "refused, naming the file", res)

# 2. single-bit flips in checkpoints
res = []
for _ in range(n(150, 20)):
    b = bytearray(good)
    i = RNG.randrange(len(b))
    b[i] ^= 1 << RNG.randrange(8)
    p = os.path.join(work, "flip.mfck")
    open(p, "wb").write(bytes(b))
    code, _, err = run(["eval", "--checkpoint", p, "--episodes", "2"])
    res.append(clear_error(code, err, [p]))
record("bit-flipped checkpoint (eval)", "refused, naming the file", res)

# 3. checkpoint headers edited with a valid checksum: every integer setting at 0, -1, 2^63-1 and "x"
sys.path.insert(0, os.path.join(ROOT, "bench", "reliability"))
from checkpoint_file import read_checkpoint, write_checkpoint  # noqa: E402

header, tensors = read_checkpoint(good)
res = []
for key, value in sorted(header["config"].items()):
    if not isinstance(value, int) or isinstance(value, bool):
        continue
    for bad in (0, -1, 2 ** 63 - 1, "x"):
        if bad == 0 and key in ("test_ways", "test_shots", "test_queries", "threads", "seed", "inner_steps",
                                "eval_steps", "refine_steps"):
            continue  # 0 is valid there
        h = json.loads(json.dumps(header))
        h["config"][key] = bad
        p = os.path.join(work, "edited.mfck")
        open(p, "wb").write(write_checkpoint(h, tensors))
        for cmd in (["eval", "--checkpoint", p, "--episodes", "2"],):
            code, _, err = run(cmd)
            res.append(clear_error(code, err, [p, f'"{key}"']))
record("checkpoint header edited, valid checksum (eval)", "refused, naming file and key", res)

# resume of an edited header (checkpoint_every / log_every 0: SIGFPE before)
res = []
for key in ("checkpoint_every", "log_every", "val_every", "filters", "meta_batch"):
    d = os.path.join(work, "edited_run")
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(base, d)
    h = json.loads(json.dumps(header))
    h["config"][key] = 0
    open(os.path.join(d, "last"), "wb").write(write_checkpoint(h, tensors))
    code, _, err = run(["meta-train", "--resume", d, "--iterations", "20"])
    res.append(clear_error(code, err, [f'"{key}"']))
record("resume of a header with a 0 interval or size", "refused, naming the key", res)

# 4. settings that overflowed or exhausted memory
res = []
for flags, names in [
    (["--filters", str(2 ** 63 - 1)], ["--filters"]), (["--filters", str(2 ** 62)], ["--filters"]),
    (["--meta-batch", "100000000"], ["--meta-batch"]), (["--image-size", "2000"], ["--image-size"]),
    (["--ways", "10000", "--meta-batch", "100000"], ["--meta-batch"]),
    (["--shots", "10000", "--queries", "10000", "--meta-batch", "100000"], ["--meta-batch"]),
    (["--inner-steps", "1000000"], ["--inner-steps"]), (["--val-episodes", "100000000"], ["--val-episodes"]),
    (["--iterations", "0"], ["--iterations"]), (["--checkpoint-every", "0"], ["--checkpoint-every"]),
    (["--log-every", "0"], ["--log-every"]), (["--ways", "1"], ["--ways"]), (["--threads", "-1"], ["--threads"]),
]:
    code, _, err = run(["meta-train", "--algo", "protonet", "--iterations", "2", "--out",
                        os.path.join(work, "x" + str(RNG.random()))] + flags)
    res.append(clear_error(code, err, names))
code, _, err = run(["eval", "--checkpoint", base, "--episodes", "1000000000000"])
res.append(clear_error(code, err, ["--episodes"]))
t0 = time.time()
code, _, err = run(["meta-train", "--config", "/dev/zero", "--out", os.path.join(work, "z")])
ok, why = clear_error(code, err, ["/dev/zero"])
res.append((ok and time.time() - t0 < 2, why or f"took {time.time() - t0:.1f} s"))
record("sizes that overflowed or exhausted memory", "refused before allocating, naming the setting", res)

# 5. flag parse errors
res = []
for argv, name in [(["--ways", "five"], "--ways"), (["--inner-lr", "abc"], "--inner-lr"),
                   (["--meta-batch", "3.5"], "--meta-batch"), (["--iterations", "1e3"], "--iterations"),
                   (["--seed", "-"], "--seed"), (["--filters", ""], "--filters"), (["--iteration", "5"], "--iterations"),
                   (["--way", "5"], "--ways"), (["--ways", "5", "--ways", "6"], "--ways"),
                   (["--max-pool", "false"], "--max-pool"), (["--bn", "query"], "--bn"),
                   (["--algo", "mamll"], "--algo"), (["--outer-lr", "nan"], "--outer-lr")]:
    code, _, err = run(["meta-train"] + argv + ["--out", os.path.join(work, "f")])
    res.append(clear_error(code, err, [name]))
record("flag parse errors (meta-train)", "usage error naming the flag", res)

# 6. NaN: divergent runs must exit 1 and leave only finite checkpoints
res = []
for flags in (["--algo", "maml", "--optimizer", "sgd", "--outer-lr", "10000", "--checkpoint-every", "1"],
              ["--algo", "protonet", "--outer-lr", "1e30", "--val-every", "2"],
              ["--algo", "maml", "--inner-lr", "1e30", "--outer-lr", "1e30", "--optimizer", "sgd"]):
    d = os.path.join(work, "nan")
    shutil.rmtree(d, ignore_errors=True)
    code, _, err = run(["meta-train"] + [a for a in SMALL if a] + flags + ["--iterations", "10", "--out", d])
    ok, why = clear_error(code, err, ["diverged", os.path.join(d, "last")])
    for name in ("last", "best"):
        p = os.path.join(d, name)
        if os.path.exists(p):
            c2, _, e2 = run(["eval", "--checkpoint", p, "--episodes", "2"])
            if c2 != 0:
                ok, why = False, f"{name} does not evaluate: {e2.strip()[:100]}"
    res.append((ok, why))
record("diverging runs", "exit 1 naming a checkpoint that evaluates (all finite)", res)

# 7. two writers of one run folder; a new run into a finished one
res = []
d = os.path.join(work, "shared")
p = subprocess.Popen([MF, "meta-train"] + SMALL + ["--algo", "protonet", "--iterations", "1000000", "--out", d],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=work)
while not os.path.exists(os.path.join(d, "last")):
    time.sleep(0.05)
for argv in (["meta-train"] + SMALL + ["--algo", "protonet", "--iterations", "5", "--out", d],
             ["meta-train"] + SMALL + ["--algo", "protonet", "--iterations", "5", "--overwrite", "--out", d],
             ["meta-train", "--resume", d, "--iterations", "2000000"]):
    code, _, err = run(argv)
    res.append(clear_error(code, err, ["in use by another metafew process", f"pid {p.pid}"]))
p.send_signal(signal.SIGTERM)
p.wait()
res.append((p.returncode == 130, f"holder exit {p.returncode}"))
code, _, err = run(["meta-train"] + SMALL + ["--algo", "protonet", "--iterations", "5", "--out", d])
res.append(clear_error(code, err, ["already holds a run", "--resume", "--overwrite"]))
record("one run folder, two writers or an old run", "refused, naming the holder or the flags", res)

# 8. interruptions: SIGINT, SIGTERM, SIGKILL at random moments, then resume; bit-identical to never stopping
whole = os.path.join(work, "whole")
common = SMALL + ["--algo", "maml", "--iterations", "200", "--val-every", "50", "--checkpoint-every", "7"]
t0 = time.time()
code, _, err = run(["meta-train"] + common + ["--out", whole])
assert code == 0, err
whole_seconds = time.time() - t0
res = []
stopped = 0  # trials where the signal arrived before the run finished
for trial in range(n(45, 6)):
    sig = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)[trial % 3]
    d = os.path.join(work, "cut")
    shutil.rmtree(d, ignore_errors=True)
    p = subprocess.Popen([MF, "meta-train"] + common + ["--out", d], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, cwd=work)
    time.sleep(RNG.uniform(0.1, 0.9) * whole_seconds)
    p.send_signal(sig)
    p.wait()
    stopped += p.returncode != 0
    code, _, err = run(["meta-train", "--resume", d]) if os.path.exists(os.path.join(d, "last")) else \
        run(["meta-train"] + common + ["--out", d, "--overwrite"])
    leftovers = [f for f in os.listdir(d) if ".tmp." in f]
    same = code == 0 and params_digest(os.path.join(d, "last")) == params_digest(os.path.join(whole, "last"))
    lines = [json.loads(x)["iteration"] for x in open(os.path.join(d, "metrics.jsonl"))] if code == 0 else []
    want = [json.loads(x)["iteration"] for x in open(os.path.join(whole, "metrics.jsonl"))]
    res.append((same and not leftovers and lines == want,
                f"{signal.Signals(sig).name}: resume exit {code}, same last {same}, temporaries {leftovers}, "
                f"metrics {'same' if lines == want else 'differ'}"))
record(f"interrupted training, resumed ({stopped} stopped mid-run)",
       "last, metrics bit-identical to an uninterrupted run; no temporaries", res)

# 9. damaged decoded-image caches: rebuilt, same episodes
data_dir = os.path.join(work, "folders")
for c in range(10):
    os.makedirs(os.path.join(data_dir, f"class{c}"))
    for i in range(4):
        w = h = 12
        raw = b"".join(b"\x00" + bytes((c * 20 + i * 3 + x * y) % 256 for x in range(w)) for y in range(h))
        chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
        png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + \
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
        open(os.path.join(data_dir, f"class{c}", f"{i}.png"), "wb").write(png)
cache = os.path.join(work, "cache")
code, ref, err = run(["data", "--data", data_dir, "--cache-dir", cache, "--json"])
assert code == 0, err
res = []
cache_files = [os.path.join(r, f) for r, _, fs in os.walk(cache) for f in fs]
for trial in range(n(21, 5)):
    for f in cache_files:
        if os.path.exists(f):
            b = bytearray(open(f, "rb").read())
            if trial % 3 == 0:
                b = b[:RNG.randrange(len(b))]
            elif len(b):
                b[RNG.randrange(len(b))] ^= 1 << RNG.randrange(8)
            open(f, "wb").write(bytes(b))
    code, out, err = run(["data", "--data", data_dir, "--cache-dir", cache, "--json"])
    now = json.loads(out) if code == 0 else {}
    same = code == 0 and all(now[k] == json.loads(ref)[k] for k in ("base", "splits", "split_order"))
    res.append((same and now["cache"]["state"].startswith("rebuilt"),
                f"exit {code}, cache {now.get('cache', {}).get('state')}: {err.strip()[:120]}"))
record("damaged image cache", "rebuilt, same dataset", res)

# 10. single-bit flips inside PNG image data
res = []
img = open(os.path.join(data_dir, "class0", "0.png"), "rb").read()
idat = img.index(b"IDAT")
length = struct.unpack(">I", img[idat - 4:idat])[0]
for _ in range(n(30, 10)):
    b = bytearray(img)
    b[idat + 4 + RNG.randrange(length)] ^= 1 << RNG.randrange(8)
    flipped = os.path.join(work, "support", "a")
    os.makedirs(flipped, exist_ok=True)
    os.makedirs(os.path.join(work, "support", "b"), exist_ok=True)
    shutil.copy(os.path.join(data_dir, "class1", "0.png"), os.path.join(work, "support", "b", "0.png"))
    open(os.path.join(flipped, "0.png"), "wb").write(bytes(b))
    code, _, err = run(["adapt", "--checkpoint", base, "--support", os.path.join(work, "support"), "--query",
                        os.path.join(flipped, "0.png")])
    res.append(clear_error(code, err, ["0.png"]))
record("bit flip inside a PNG's image data", "refused (chunk CRC), naming the file", res)

shutil.rmtree(work, ignore_errors=True)
print("\n| bad input or fault | tried | expected | held |")
print("| --- | --- | --- | --- |")
for kind, tried, expected, held, _ in rows:
    print(f"| {kind} | {tried} | {expected} | {held} |")
sys.exit(0 if all(held == tried for _, tried, _, held, _ in rows) else 1)
