#!/usr/bin/env bash
# Prototypical Networks, Omniglot 20-way 5-shot (Snell et al. 2017: 98.9): the model of protonet_5w5s.sh.
source "$(dirname "$0")/lib.sh"
train_protonet 5
evaluate protonet_20w5s protonet_5shot "98.9" --ways 20 --shots 5 --queries 15 --episodes 1000
