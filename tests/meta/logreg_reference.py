#!/usr/bin/env python3
"""Independent solution of the logistic-regression head's test problem (tests/meta/test_heads.cpp).

Minimises c * sum_i cross-entropy(W x_i + b, y_i) + |W|^2 / 2 (scikit-learn's objective, bias unpenalised)
with PyTorch's L-BFGS (strong Wolfe line search) in double precision, then shifts b to sum to 0 (the softmax
does not see a common shift). Run with an interpreter that has torch: /usr/bin/python3 tests/meta/logreg_reference.py
"""
import torch

torch.set_default_dtype(torch.float64)
X = torch.tensor([[1.0, 0.2, -0.5], [0.8, -0.1, 0.3], [-0.4, 1.1, 0.0], [0.1, 0.9, 0.7],
                  [-0.6, -0.3, 1.2], [0.2, -0.8, 0.9], [0.5, 0.5, 0.5]])
y = torch.tensor([0, 0, 1, 1, 2, 2, 1])
c = 2.0
W = torch.zeros(3, 3, requires_grad=True)
b = torch.zeros(3, requires_grad=True)
opt = torch.optim.LBFGS([W, b], lr=1, max_iter=10000, tolerance_grad=1e-14, tolerance_change=1e-16,
                        history_size=20, line_search_fn="strong_wolfe")


def closure():
    opt.zero_grad()
    loss = c * torch.nn.functional.cross_entropy(X @ W.T + b, y, reduction="sum") + 0.5 * (W * W).sum()
    loss.backward()
    return loss


for _ in range(20):
    opt.step(closure)
final = closure().item()
with torch.no_grad():
    bias = b - b.mean()
    print("objective", repr(final))
    print("weight", [repr(v) for v in W.flatten().tolist()])
    print("bias", [repr(v) for v in bias.tolist()])
    print("max |grad|", max(W.grad.abs().max().item(), b.grad.abs().max().item()))
