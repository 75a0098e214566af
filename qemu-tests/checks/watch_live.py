#!/usr/bin/env python3
"""Host-side check for deploy-watch: the deploy image's stages reached `anemos deploy --json`
while they ran, not in one burst at the end. Reads the JSON event lines; fails unless
- every stage from network to finish was seen (begin), in order, after the kexec event;
- the events' arrival times spread over at least half of the time the deploy image itself
  reports for those stages (the sum of their "ok (N ms)" figures), so they were live;
- the provision script's progress lines (a ~10 s step) arrived spread over at least 4 s;
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
want = ["network", "ssh", "fetch", "devices", "plan", "verify", "partition", "mkfs", "mount", "install", "bootloader", "finish"]
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
if image < 1000:
    raise SystemExit(f"FAIL: the deploy image reports only {image} ms from partition to finish: too short to tell live from batched")
if arrival < image / 2:
    raise SystemExit(f"FAIL: partition..finish arrived within {arrival} ms but took {image} ms in the deploy image: not live")
steps = [e["t_ms"] for e in events if e["event"] == "log" and "provision: step" in e["line"]]
if len(steps) != 5:
    raise SystemExit(f"FAIL: expected the 5 progress lines of the provision step, got {len(steps)}")
progress = steps[-1] - steps[0]
if progress < 4000:
    raise SystemExit(f"FAIL: the provision step's progress (8 s in the deploy image) arrived within {progress} ms: not live")
result = events[-1]
if result["event"] != "result" or not result["ok"] or result["deploy_id"] != kexec["deploy_id"]:
    raise SystemExit(f"FAIL: last event is not a successful result for {kexec['deploy_id']}: {result}")
print(f"ok: {len(stages)} stage events live: partition..finish took {image} ms in the deploy image and arrived over {arrival} ms; "
      f"provision progress 1/5..5/5 arrived over {progress} ms; first stage event {min(e['t_ms'] for e in stages) - kexec['t_ms']} ms after the kexec; success at {result['t_ms']} ms, deploy id {result['deploy_id']}")
