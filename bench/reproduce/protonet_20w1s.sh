#!/usr/bin/env bash
# Prototypical Networks, Omniglot 20-way 1-shot (Snell et al. 2017: 96.0): the model of protonet_5w1s.sh
# (trained 60-way 1-shot) tested on 1000 20-way 1-shot episodes with 15 queries per class.
source "$(dirname "$0")/lib.sh"
train_protonet 1
evaluate protonet_20w1s protonet_1shot "96.0" --ways 20 --shots 1 --queries 15 --episodes 1000
