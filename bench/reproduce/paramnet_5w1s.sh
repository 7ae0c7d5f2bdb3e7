#!/usr/bin/env bash
# ParamNet (ours: the linear head predicted from the support prototypes), Omniglot 5-way 1-shot, trained as
# matchingnet_5w1s.sh. No published figure: compare with ProtoNets and Matching Networks.
source "$(dirname "$0")/lib.sh"
iterations - 6000  # published: trained until validation stopped improving; no count stated
train paramnet_5w1s --data "$OMNIGLOT" --algo paramnet --ways 5 --shots 1 --queries 15 --meta-batch 1
evaluate paramnet_5w1s paramnet_5w1s "(ours)" --ways 5 --shots 1 --queries 15 --episodes 600
