#!/usr/bin/env python3
"""Rebuilds the tables of bench/results/omniglot.md from the row files bench/results/omniglot/*.json.

Only the text between the '<!-- table:NAME -->' and '<!-- end table -->' markers is replaced; the prose
around them is kept. A row script (bench/reproduce/ROW.sh) without a result file is listed as not run.
"""
import glob
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RESULTS = os.path.join(ROOT, "bench", "results", "omniglot")
DOC = os.path.join(ROOT, "bench", "results", "omniglot.md")

NAMES = {"protonet": "ProtoNets", "maml": "MAML", "fomaml": "first-order MAML", "metasgd": "Meta-SGD",
         "anil": "ANIL", "reptile": "Reptile", "matchingnet": "Matching Networks", "paramnet": "ParamNet",
         "pretrain": "Pretraining"}


def meta_baseline(r):
    """ProtoNets with cosine prototypes from a pretrained backbone (lib.sh's train_metabaseline)."""
    return r["result"]["algo"] == "protonet" and "--distance cosine" in r["training"]["command"]


def hms(seconds):
    m = int(round(seconds / 60))
    return f"{m // 60} h {m % 60:02d} min" if m >= 60 else f"{m} min"


def machine(r):
    """The machine a row ran on, as its JSON file records it (lscpu's model name, cores), shortened."""
    name = re.sub(r"\((R|TM)\)", "", r["machine"]).replace(" Processor", "")
    return re.sub(r", (\d+) cores$", r", \1-core", name)


def reference_attention(r):
    """A Matching Networks run trained with the reference code's q . s / |s| (the issue's rows since session 15;
    the cosine-trained runs are the ablation, omniglot.md says why)."""
    return "--matching-attention supnorm" in r["training"]["command"]


def row_line(r):
    res, tr = r["result"], r["training"]
    if "neg_mse" in res:
        setting = f"sinusoid {res['shots']}-shot"
        score = f"MSE {res['mse']:.3f} +- {res['ci95']:.3f}"
    else:
        setting = f"{res['ways']}w{res['shots']}s"
        score = f"{100 * res['accuracy']:.2f} +- {100 * res['ci95']:.2f}"
    if res.get("episodes_within", "any") == "alphabet":
        setting += " within an alphabet"  # Lake's trials (eval --episodes-within alphabet)
    if res.get("bn", "transductive") != "transductive":
        setting += f" {res['bn']}"  # test-time batch norm other than the default (eval --bn)
    name = NAMES.get(res["algo"], res["algo"])
    if res["algo"] == "matchingnet":
        name += " (reference-code attention)" if reference_attention(r) else " (cosine in training; ablation)"
    if meta_baseline(r):
        name = "Meta-Baseline (pretraining, then ProtoNets with cosine prototypes)"
    if res.get("head", "own") != "own":
        name += f" + {res['head']} head"
    its = f"{tr['iterations']:,}"
    if tr["published_iterations"] is None:
        its += " (none stated)"
    elif tr["iterations"] < tr["published_iterations"]:
        its += f" of {tr['published_iterations']:,}"
    return (f"| {name} | {setting} | {score} | {r['published']} | {its} | "
            f"{hms(tr['wall_seconds'])} | {tr['threads']} | {machine(r)} | {res['episodes']} (steps {res['steps']}) | "
            f"`{r['row']}.sh` |")


# Lake et al. (2015) and Koch et al. (2015) on Lake's 20-way one-shot trials within an alphabet (../shared/
# PROTOCOLS.md): the figures our within-alphabet rows stand beside.
LAKE_PUBLISHED = [("People", "95.5"), ("Bayesian Program Learning (Lake et al.)", "96.7"),
                  ("Siamese network with affine distortions (Koch et al.)", "92.0")]


def table(rows, published=()):
    head = ("| algorithm | setting | accuracy % (95% CI) | published | iterations (of published) | training time | "
            "threads | machine | test episodes | script |\n"
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n")
    lines = [row_line(r) for r in rows]
    lines += [f"| {who} | 20w1s within an alphabet | - | {figure} | - | - | - | - | 400 trials (20 runs) | - |"
              for who, figure in published]
    return head + "\n".join(lines) + "\n"


def main():
    rows = {}
    for path in sorted(glob.glob(os.path.join(RESULTS, "*.json"))):
        with open(path) as f:
            r = json.load(f)
        rows[r["row"]] = r
    scripts = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(HERE, "*_*.sh")))
    missing = [s for s in scripts if s not in rows]
    def within(r):
        return r["result"].get("episodes_within", "any") == "alphabet"
    def ablation(r):
        return r["result"]["algo"] == "matchingnet" and not reference_attention(r)
    groups = {"vinyals": [r for k, r in rows.items() if not k.startswith("lake_") and not ablation(r)],
              "lake": [r for k, r in rows.items() if k.startswith("lake_") and not within(r)],
              "lake_within": [r for k, r in rows.items() if k.startswith("lake_") and within(r)],
              "ablation": [r for r in rows.values() if ablation(r)]}
    order = {s: i for i, s in enumerate(["protonet", "maml", "fomaml", "metasgd", "anil", "reptile",
                                         "matchingnet", "paramnet", "pretrain"])}
    for g in groups.values():
        g.sort(key=lambda r: (r["row"].endswith("sinusoid"), meta_baseline(r), order.get(r["result"]["algo"], 99),
                              r["result"].get("head", "own"),
                              r["result"]["ways"], r["result"]["shots"],
                              r["result"].get("bn", "transductive") != "transductive"))
    text = open(DOC).read()
    for name, g in groups.items():
        body = table(g, LAKE_PUBLISHED if name == "lake_within" else ())
        if name == "vinyals" and missing:
            body += "\nNot run yet: " + ", ".join(f"`{m}.sh`" for m in missing) + "\n"
        pattern = re.compile(rf"(<!-- table:{name} -->\n).*?(<!-- end table -->)", re.S)
        if not pattern.search(text):
            sys.exit(f"table.py: {DOC} has no '<!-- table:{name} -->' ... '<!-- end table -->' block")
        text = pattern.sub(lambda m: m.group(1) + body + m.group(2), text)
    cmds = "".join(f"- `{r['row']}`: `{r['training']['command']}`, then `{r['eval_command']}`\n"
                   for g in groups.values() for r in g)
    pattern = re.compile(r"(<!-- table:commands -->\n).*?(<!-- end table -->)", re.S)
    if not pattern.search(text):
        sys.exit(f"table.py: {DOC} has no '<!-- table:commands -->' ... '<!-- end table -->' block")
    text = pattern.sub(lambda m: m.group(1) + cmds + m.group(2), text)
    with open(DOC, "w") as f:
        f.write(text)
    print(f"table.py: {len(rows)} rows written to {os.path.relpath(DOC, ROOT)}")


if __name__ == "__main__":
    main()
