#!/usr/bin/env bash
# Reptile, Omniglot 5-way 5-shot, non-transductive (Nichol et al. 2018: 98.90): the model of reptile_5w1s.sh
# tested with 5 shots, each query in one forward pass with the support set (--bn nontransductive).
source "$(dirname "$0")/lib.sh"
train_reptile_5w
evaluate reptile_5w5s_nontransductive reptile_5w "98.90" --ways 5 --shots 5 --queries 1 --episodes 600 --steps 50 \
  --bn nontransductive
