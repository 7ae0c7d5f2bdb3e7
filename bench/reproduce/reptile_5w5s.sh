#!/usr/bin/env bash
# Reptile, Omniglot 5-way 5-shot (Nichol et al. 2018: 98.90; 99.48 transductive): the model of
# reptile_5w1s.sh tested with 5 shots.
source "$(dirname "$0")/lib.sh"
train_reptile_5w
evaluate reptile_5w5s reptile_5w "99.48 transductive (98.90)" --ways 5 --shots 5 --queries 1 --episodes 600 --steps 50
