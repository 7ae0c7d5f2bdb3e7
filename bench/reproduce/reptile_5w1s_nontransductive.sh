#!/usr/bin/env bash
# Reptile, Omniglot 5-way 1-shot, non-transductive (Nichol et al. 2018: 95.39): the model of reptile_5w1s.sh
# tested as supervised-reptile does by default: each query is classified in one forward pass with the support
# set (batch norm over the support set + that query, --bn nontransductive), so no query sees another.
source "$(dirname "$0")/lib.sh"
train_reptile_5w
evaluate reptile_5w1s_nontransductive reptile_5w "95.39" --ways 5 --shots 1 --queries 1 --episodes 600 --steps 50 \
  --bn nontransductive
