#!/usr/bin/env bash
# Lake's protocol as Lake et al. ran it (the table "Lake's protocol: 20-way one-shot within alphabets"): the
# model of lake_protonet_20w1s.sh (ProtoNets trained on images_background only, the final parameters), tested
# on 20-way 1-shot trials within one alphabet of images_evaluation, the support drawn by one person and every
# query by another (--episodes-within alphabet; Note [Episodes within an alphabet] in src/data/episode.cpp).
# Nothing here was chosen on these trials: the model and its settings are the cross-alphabet row's.
source "$(dirname "$0")/lib.sh"
iterations - 3000
train lake_protonet_1shot --data "$OMNIGLOT" --algo protonet --ways 60 --shots 1 --queries 5 \
  --train-split background --val-split "" --schedule step --schedule-step 2000 --schedule-gamma 0.5
evaluate lake_protonet_20w1s_within lake_protonet_1shot "-" --split evaluation --ways 20 --shots 1 --queries 15 \
  --episodes 1000 --episodes-within alphabet
