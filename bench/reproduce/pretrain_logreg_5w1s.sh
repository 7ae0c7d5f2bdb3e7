#!/usr/bin/env bash
# Pretraining + logreg head, Omniglot 5-way 1-shot: the pretrained conv-4 of lib.sh's train_pretrain, each
# test episode classified by logistic regression on L2-normalised features (RFS; C = 10, chosen on
# 300 validation episodes at 5w1s and 20w1s from 1 (RFS's), 10 and 100: 98.80 / 95.56 against 98.45 / 94.24 at
# C = 1 and 98.79 / 95.55 at C = 100).
# No published Omniglot figure (the papers report miniImageNet); the comparison is the ProtoNets row.
source "$(dirname "$0")/lib.sh"
train_pretrain
evaluate pretrain_logreg_5w1s pretrain "-" --ways 5 --shots 1 --queries 15 --episodes 1000 --head logreg --logreg-c 10
