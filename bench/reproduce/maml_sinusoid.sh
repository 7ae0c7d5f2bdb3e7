#!/usr/bin/env bash
# MAML on sinusoid regression (Finn et al. 2017; about 0.6-0.8 MSE after adaptation, 10-shot; Meta-SGD paper:
# MAML 0.77): amplitude [0.1, 5], phase [0, pi], x in [-5, 5]; MLP 40-40 ReLU; K = 10; meta-batch 25; one
# inner step of 0.01; Adam 1e-3; 70k iterations. Test: 600 tasks, 1 step, 10 query points; the "accuracy"
# of a regression row is -MSE.
DATA=builtin:sinusoid
source "$(dirname "$0")/lib.sh"
iterations 70000 70000
train maml_sinusoid --data builtin:sinusoid --algo maml --model mlp --shots 10 --queries 10 --meta-batch 25 \
  --inner-steps 1 --inner-lr 0.01 --outer-lr 0.001 --eval-steps 1
evaluate maml_sinusoid maml_sinusoid "0.6-0.8 MSE (0.77)" --shots 10 --queries 10 --episodes 600 --steps 1
