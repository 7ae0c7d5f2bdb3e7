#!/usr/bin/env bash
# ResNet-12 Prototypical Networks, Omniglot 5-way 1-shot (Vinyals split with rotations, 28x28): issue 26's
# learning check, at least 98.5% after at most 1 hour of training at 2 threads. No published Omniglot figure
# for this backbone (MetaOptNet and RFS report miniImageNet, tieredImageNet, CIFAR-FS and FC100).
# ResNet-12 of MetaOptNet / RFS at its default widths 64-160-320-640 (Winograd 3x3 convolutions, the
# backbone's default). Training: 20-way 1-shot episodes with 5 queries per class (ProtoNets' 60-way episodes
# cost three times as much: 2.9 s against 0.96 s at 2 threads, `metafew bench --algo protonet --model
# resnet12 --ways 20 --shots 1 --queries 5 --meta-batch 1 --threads 2`), Adam 1e-3 halved every 1000 episodes,
# 3,000 episodes; validation every 500 on 200 5-way 1-shot val episodes; test 1000 episodes, 15 queries.
# The row and its checkpoint go to bench/results/resnet12 (the 50 MB checkpoint is not committed; this
# script makes it again).
RESULTS="${RESULTS:-$(cd "$(dirname "$0")/../.." && pwd)/bench/results/resnet12}"
source "$(dirname "$0")/lib.sh"
iterations - 3000
train resnet12_protonet_1shot --data "$OMNIGLOT" --algo protonet --model resnet12 --ways 20 --shots 1 \
  --queries 5 --test-ways 5 --test-shots 1 --test-queries 15 --schedule step --schedule-step 1000 \
  --schedule-gamma 0.5 --val-every 500 --val-episodes 200 --checkpoint-every 500
evaluate resnet12_protonet_5w1s resnet12_protonet_1shot "-" --ways 5 --shots 1 --queries 15 --episodes 1000
