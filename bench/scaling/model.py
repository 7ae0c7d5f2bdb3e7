#!/usr/bin/env python3
"""Projected efficiency of meta-train over P processes (bench/results/scaling.md, "A scaling model").

Each process has one core and runs ceil(B / P) of the meta-batch's B tasks (processes past B idle). The
meta-gradient then travels the chain of the H = min(P, B) processes that hold tasks (Note [Task-order
reduction]): H - 1 hops of one message of M bytes, each hop followed by the receiver adding its tasks'
gradients (n_local x the add time of one task), then a broadcast from the last holder, modelled as a binomial
tree of ceil(log2 P) hops (an upper bound: Open MPI pipelines large broadcasts). A hop costs alpha + M / beta.
Efficiency = T(1) / (P x T(P)), where T(1) = B x t_task is one core running every task with no messages.

Inputs are measured figures (bench/results/scaling.md says where each comes from) and the published round
figures of the two networks. Usage: python3 bench/scaling/model.py
"""
import math

NETWORKS = {
    # alpha: one-way latency of a small MPI message (s); beta: bandwidth (bytes/s)
    "loopback (measured, comm_bench)": (0.8e-6, 3.6e9),
    "10 GbE (TCP)": (25e-6, 1.25e9),
    "100 Gb/s InfiniBand (EDR)": (1.0e-6, 12.5e9),
}

WORKLOADS = {
    # t_task: seconds per task on one core; M: message bytes; add: seconds to add one task's gradient; B: tasks
    "MAML 5w1s, conv-4, meta-batch 32": dict(t_task=2 / 22.35, M=449_300, add=30e-6, B=32),
    "ResNet-12 ProtoNets 5w1s 84x84, meta-batch 32": dict(t_task=2 * 10.37, M=49_900_000, add=10e-3, B=32),
    "ResNet-12 ProtoNets 5w1s 84x84, meta-batch 1": dict(t_task=2 * 10.37, M=49_900_000, add=10e-3, B=1),
}


def iteration_time(P, t_task, M, add, B, alpha, beta):
    per = math.ceil(B / P)
    holders = min(P, B)
    hop = alpha + M / beta
    chain = (holders - 1) * (hop + per * add)
    bcast = math.ceil(math.log2(P)) * hop if P > 1 else 0.0
    return per * t_task, chain, bcast


def main():
    for wname, w in WORKLOADS.items():
        print(f"\n{wname}")
        print("| network | P | compute s | chain s | broadcast s | efficiency | speed-up |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        t1 = w["B"] * w["t_task"]
        for nname, (alpha, beta) in NETWORKS.items():
            for P in (2, 8, 32, 128):
                c, ch, bc = iteration_time(P, alpha=alpha, beta=beta, **w)
                t = c + ch + bc
                print(f"| {nname} | {P} | {c:.3f} | {ch:.4f} | {bc:.4f} | {100 * t1 / (P * t):.1f}% | {t1 / t:.1f}x |")


if __name__ == "__main__":
    main()
