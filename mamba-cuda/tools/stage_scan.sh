#!/bin/bash
# Builds the scan test and benchmark (release) into .device-scan/ (git-ignored)
# for device_scan.sh on the GPU machine. Run from the workspace root.
set -euo pipefail
mkdir -p .device-scan
{ cargo build --release -p mamba-cuda --bench scan --message-format=json 2>/dev/null
  cargo test --release -p mamba-cuda --test selective_scan --no-run --message-format=json 2>/dev/null; } | python3 -c '
import sys, json, shutil
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] != ["lib"]:
        name = m["target"]["name"] + ("_bench" if m["target"]["kind"] == ["bench"] else "")
        shutil.copy(m["executable"], ".device-scan/" + name); print(name)
'
strip .device-scan/*
ls -la .device-scan
