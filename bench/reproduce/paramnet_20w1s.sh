#!/usr/bin/env bash
# ParamNet (ours), Omniglot 20-way 1-shot, trained as matchingnet_20w1s.sh.
source "$(dirname "$0")/lib.sh"
iterations - 4000  # published: trained until validation stopped improving; no count stated
train paramnet_20w1s --data "$OMNIGLOT" --algo paramnet --ways 20 --shots 1 --queries 5 --meta-batch 1
evaluate paramnet_20w1s paramnet_20w1s "(ours)" --ways 20 --shots 1 --queries 5 --episodes 600
