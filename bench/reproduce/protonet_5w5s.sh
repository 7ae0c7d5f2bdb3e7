#!/usr/bin/env bash
# Prototypical Networks, Omniglot 5-way 5-shot (Snell et al. 2017: 99.7). Trained 60-way 5-shot, 5 queries,
# Adam 1e-3 halved every 2000 episodes; test 1000 episodes, 15 queries. protonet_20w5s.sh tests it 20-way.
source "$(dirname "$0")/lib.sh"
train_protonet 5
evaluate protonet_5w5s protonet_5shot "99.7" --ways 5 --shots 5 --queries 15 --episodes 1000
