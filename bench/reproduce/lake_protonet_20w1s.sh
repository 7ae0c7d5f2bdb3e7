#!/usr/bin/env bash
# Lake's protocol (second table): ProtoNets trained on images_background only (964 characters, no
# rotations, no validation split: the final parameters are tested), tested on images_evaluation (659
# characters) 20-way 1-shot, 1000 episodes; cross-alphabet episodes. No published ProtoNets figure under
# this protocol; it is harder than the Vinyals split (fewer training classes, unseen alphabets).
source "$(dirname "$0")/lib.sh"
iterations - 3000  # published: trained until validation stopped improving; no count stated
train lake_protonet_1shot --data "$OMNIGLOT" --algo protonet --ways 60 --shots 1 --queries 5 \
  --train-split background --val-split "" --schedule step --schedule-step 2000 --schedule-gamma 0.5
evaluate lake_protonet_20w1s lake_protonet_1shot "-" --split evaluation --ways 20 --shots 1 --queries 15 --episodes 1000
