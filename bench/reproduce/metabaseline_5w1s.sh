#!/usr/bin/env bash
# Meta-Baseline, Omniglot 5-way 1-shot: the pretrained conv-4 fine-tuned as ProtoNets with cosine prototypes
# (lib.sh's train_metabaseline, 1-shot episodes), tested on 1000 5-way 1-shot episodes with 15 queries.
# No published Omniglot figure (the paper reports miniImageNet and tieredImageNet).
source "$(dirname "$0")/lib.sh"
train_metabaseline 1
evaluate metabaseline_5w1s metabaseline_1shot "-" --ways 5 --shots 1 --queries 15 --episodes 1000
