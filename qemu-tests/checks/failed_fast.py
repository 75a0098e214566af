#!/usr/bin/env python3
"""Host-side check: `anemos deploy --json` learned of a failure from the deploy image and exited
soon after. Reads the JSON event lines; fails unless an `outcome` event with status "failed"
names STAGE, a `result` event with ok=false and this deploy's ID comes last, its error names the
stage, and the result came within LIMIT seconds of the outcome. Prints the figures.
Usage: failed_fast.py EVENTS.jsonl STAGE LIMIT_S"""
import json
import sys

events = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
stage, limit = sys.argv[2], float(sys.argv[3])
kexec = next((e for e in events if e["event"] == "kexec"), None)
outcome = next((e for e in events if e["event"] == "outcome"), None)
if kexec is None or outcome is None:
    raise SystemExit(f"FAIL: no kexec or no outcome event ({[e['event'] for e in events]})")
if outcome["status"] != "failed" or outcome["stage"] != stage:
    raise SystemExit(f"FAIL: outcome is not a failure in stage {stage}: {outcome}")
result = events[-1]
if result["event"] != "result" or result["ok"] or result["deploy_id"] != kexec["deploy_id"]:
    raise SystemExit(f"FAIL: the last event is not a failed result for {kexec['deploy_id']}: {result}")
if f"stage {stage}" not in (result["error"] or ""):
    raise SystemExit(f"FAIL: the result's error does not name stage {stage}: {result['error']}")
delay = (result["t_ms"] - outcome["t_ms"]) / 1000
if delay > limit:
    raise SystemExit(f"FAIL: anemos deploy exited {delay:.1f} s after the failure was known (limit {limit} s)")
print(f"ok: failure in stage {stage} known {(outcome['t_ms'] - kexec['t_ms']) / 1000:.1f} s after the kexec; "
      f"anemos deploy exited {delay:.1f} s later (limit {limit} s), deploy id {result['deploy_id']}; "
      f"disks written: {outcome['disks_written']}; next: {outcome['next']}")
