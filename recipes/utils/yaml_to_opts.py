#!/usr/bin/env python3
"""Print a flat YAML mapping as command-line options, one per line: `beam_size: 10` ->
`--beam-size` / `10`; `true` -> the bare flag, `false` -> `--no-NAME`; lists are comma-joined.
Used by recipes/asr.sh to turn conf/decode.yaml into `audiokit asr decode` options."""

import sys

import yaml


def main(path: str) -> None:
    with open(path, encoding="utf-8") as f:
        raw = yaml.safe_load(f) or {}
    if not isinstance(raw, dict):
        sys.exit(f"error: {path}: expected a mapping of option: value lines")
    for key, value in raw.items():
        flag = "--" + str(key).replace("_", "-")
        if isinstance(value, dict):
            sys.exit(f"error: {path}: '{key}' is nested; decode options must be flat key: value")
        if value is True:
            print(flag)
        elif value is False:
            print("--no-" + flag[2:])
        elif value is not None:
            print(flag)
            print(",".join(map(str, value)) if isinstance(value, list) else value)


if __name__ == "__main__":
    main(sys.argv[1])
