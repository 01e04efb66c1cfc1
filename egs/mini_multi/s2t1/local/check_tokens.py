#!/usr/bin/env python3
"""Check that a train config's OWSM symbol ids match the token list: TOKEN_DIR CONFIG."""

from __future__ import annotations

import sys

import yaml

from audiokit.text import load_tokenizer

tokens = load_tokenizer(sys.argv[1]).token_list
args = yaml.safe_load(open(sys.argv[2], encoding="utf-8"))["model"]["args"]
want = {**args["languages"], **args["tasks"], "<na>": args["na_id"], "<nolang>": args["nolang_id"]}
bad = {s: i for s, i in want.items() if s not in tokens or tokens.id(s) != i}
if bad:
    sys.exit(f"{sys.argv[2]}: ids {bad} differ from {sys.argv[1]}/tokens.txt; fix model.args")
print(f"token ids of {len(want)} OWSM symbols match {sys.argv[1]}")
