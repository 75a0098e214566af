#!/usr/bin/env python3
"""Host-side check for deploy-watch: the deploy image's stages reached `anemos deploy --json`
while they ran, not in one burst at the end. Reads the JSON event lines; fails unless
- every stage from network to finish was seen (begin), in order, after the kexec event;
- the progress lines of the provision script (5 steps of 3 s) arrived live: at least three of
  them about 3 s apart, not in one burst;
- a result event with ok=true and the deploy ID came last.
Prints the figures. Usage: watch_live.py EVENTS.jsonl"""
import json
import sys

events = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
kexec = next((e for e in events if e["event"] == "kexec"), None)
if kexec is None:
    raise SystemExit("FAIL: no kexec event")
stages = [e for e in events if e["event"] == "stage"]
begins = [e for e in stages if e["status"] == "begin"]
names = [e["stage"] for e in begins]
want = ["network", "ssh", "fetch", "devices", "plan", "verify", "check", "partition", "mkfs", "mount", "install", "bootloader", "finish"]
missing = [w for w in want if w not in names]
if missing:
    raise SystemExit(f"FAIL: stage begin events missing: {missing} (seen {names})")
if [n for n in names if n in want] != want:
    raise SystemExit(f"FAIL: stages out of order: {names}")
if min(e["t_ms"] for e in stages) < kexec["t_ms"]:
    raise SystemExit("FAIL: a stage event before the kexec event")
t = {e["stage"]: e["t_ms"] for e in begins}
arrival = t["finish"] - t["partition"]
image = sum(e["ms"] or 0 for e in stages if e["status"] == "ok" and e["stage"] in want and want.index("partition") <= want.index(e["stage"]) < want.index("finish"))
steps = [e["t_ms"] for e in events if e["event"] == "log" and "provision: step" in e["line"]]
if len(steps) != 5:
    raise SystemExit(f"FAIL: expected the 5 progress lines of the provision step, got {len(steps)}")
# The step is 5 x 3 s in the deploy image. Lines read in one burst (the watcher catching up
# after connecting) arrive within milliseconds of each other; live ones about 3 s apart. The
# watcher connects a few seconds into the deploy, so at least the last three must be live.
live_gaps = [b - a for a, b in zip(steps, steps[1:]) if b - a >= 1500]
if len(live_gaps) < 2:
    raise SystemExit(f"FAIL: the provision step's progress arrived at {[s - steps[0] for s in steps]} ms: fewer than 3 lines live")
progress = steps[-1] - steps[0]
result = events[-1]
if result["event"] != "result" or not result["ok"] or result["deploy_id"] != kexec["deploy_id"]:
    raise SystemExit(f"FAIL: last event is not a successful result for {kexec['deploy_id']}: {result}")
print(f"ok: {len(stages)} stage events; partition..finish took {image} ms in the deploy image and arrived over {arrival} ms; "
      f"provision progress 1/5..5/5 arrived over {progress} ms ({len(live_gaps) + 1} lines live, at {[s - steps[0] for s in steps]} ms); first stage event {min(e['t_ms'] for e in stages) - kexec['t_ms']} ms after the kexec; success at {result['t_ms']} ms, deploy id {result['deploy_id']}")
