#!/usr/bin/python
# -*- coding: utf-8 -*-
# SPDX-License-Identifier: MIT OR Apache-2.0

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: anemos_deploy
short_description: Deploy a whole machine with anemos deploy
version_added: "0.1.0"
description:
  - Runs C(anemos deploy --json) on the controller for one inventory host. anemos uploads itself,
    the base image and the payload over ssh, shows the server's plan, kexecs the server into
    its deploy image and watches it until the server answers ssh as the deployed system.
  - The module reads the machine-readable events of C(anemos deploy --json) and returns the
    deploy ID, the time of every stage of the deploy image, and on failure the failed stage,
    the error and the last lines of the deploy log.
  - "Run it on the controller (C(connection: local) for the play, or C(delegate_to: localhost));
    the servers need only ssh, no Python."
  - A deploy always reinstalls the server, so a successful run always reports C(changed).
  - In check mode it runs C(anemos deploy --plan-only) instead, which uploads what the plan
    needs into O(remote_dir), prints the server's plan and changes no disk. With C(--diff) the
    plan is shown as the diff.
author:
  - anemos developers (@anemos)
options:
  host:
    description:
      - The server as given to ssh, C([user@]host), usually C(root@{{ ansible_host }}).
    type: str
    required: true
  payload:
    description:
      - The deploy description directory (with C(anemos.toml)) for this host. Per-host payloads
        come from inventory data, for example C(payloads/{{ inventory_hostname }}).
    type: path
    required: true
  image:
    description:
      - The base image made by C(anemos pack). It is uploaded once per host; a server that
        already has it (same sha256 in O(remote_dir)) is not sent it again.
    type: path
    required: true
  ssh_options:
    description:
      - ssh options, each passed as C(-o OPTION), for example C(Port=2222) or
        C(IdentityFile=~/.ssh/deploy).
    type: list
    elements: str
    default: []
  network_keep:
    description:
      - Have the deploy image take over the server's current addresses, routes and DNS
        (C(--network keep)), for servers without DHCP.
    type: bool
    default: false
  timeout:
    description:
      - Seconds to wait for the server to come back as the deployed system after the kexec.
    type: int
    default: 900
  append:
    description:
      - Extra kernel arguments for the deploy image, for example C(anemos.countdown=1).
    type: str
  remote_dir:
    description:
      - Where anemos keeps its files on the server.
    type: str
    default: /tmp/anemos-deploy
  binary:
    description:
      - The anemos binary on the controller, a path or a name looked up in E(PATH).
    type: path
    default: anemos
  log_lines:
    description:
      - How many lines of the deploy log RV(log_tail) keeps on failure.
    type: int
    default: 30
notes:
  - Check mode is supported; C(--diff) shows the plan.
  - Use the play keywords C(serial), C(max_fail_percentage) and C(forks) for rolling batches
    and parallel deploys.
requirements:
  - anemos and OpenSSH's ssh on the controller.
'''

EXAMPLES = r'''
- name: Deploy the fleet in batches of two, stop at the first failure
  hosts: fleet
  connection: local
  gather_facts: false
  serial: 2
  max_fail_percentage: 0
  tasks:
    - name: Deploy
      anemos.fleet.anemos_deploy:
        host: "root@{{ ansible_host }}"
        payload: "payloads/{{ inventory_hostname }}"
        image: images/base.img
        ssh_options:
          - "Port={{ ansible_port | default(22) }}"
          - IdentityFile=~/.ssh/deploy
        timeout: 900

- name: Show each server's plan without changing it (run with --check --diff)
  hosts: fleet
  connection: local
  gather_facts: false
  tasks:
    - anemos.fleet.anemos_deploy:
        host: "root@{{ ansible_host }}"
        payload: "payloads/{{ inventory_hostname }}"
        image: images/base.img
        network_keep: true
        append: anemos.countdown=1
'''

RETURN = r'''
deploy_id:
  description: The ID of the deploy, written into the deployed system. Null in check mode.
  returned: when the server was kexec'd into the deploy image
  type: str
  sample: anemos-1796031807-61df0e50
plan:
  description: The server's plan, as C(anemos kexec) printed it there.
  returned: when the server showed it
  type: str
stages:
  description: The deploy image's stages in order, with their status and duration.
  returned: always
  type: list
  elements: dict
  sample: [{"stage": "partition", "status": "ok", "ms": 112}]
stage_ms:
  description: Milliseconds each finished stage of the deploy image took, by stage name.
  returned: always
  type: dict
  sample: {"mkfs": 1705, "install": 17177}
uploads:
  description: Each file the server needed, C(uploaded) or C(present) (already there).
  returned: always
  type: list
  elements: dict
  sample: [{"file": "/tmp/anemos-deploy/base.img", "action": "present"}]
duration_ms:
  description: Milliseconds from the start of the deploy to its last event.
  returned: always
  type: int
failed_stage:
  description:
    - The stage that failed. A stage of the deploy image (for example C(check) or C(plan)) when
      it reported one; otherwise the step on the controller side, one of C(pack), C(upload),
      C(remote-plan), C(kexec), C(wait).
  returned: failure
  type: str
  sample: check
error:
  description: The error, as the deploy image or anemos deploy reported it.
  returned: failure
  type: str
disks_written:
  description: Whether the deploy image had written to a disk when it failed.
  returned: failure, when the deploy image reported its outcome
  type: bool
log_tail:
  description:
    - The last lines of the deploy image's log (or of anemos deploy's messages when the deploy
      image was never reached).
  returned: failure
  type: list
  elements: str
'''

import json
import os
import signal
import subprocess

from ansible.module_utils.basic import AnsibleModule

STEP_NAMES = {1: 'pack', 2: 'upload', 3: 'remote-plan', 4: 'kexec', 5: 'wait', 6: 'wait'}


ARGUMENT_SPEC = dict(
    host=dict(type='str', required=True),
    payload=dict(type='path', required=True),
    image=dict(type='path', required=True),
    ssh_options=dict(type='list', elements='str', default=[]),
    network_keep=dict(type='bool', default=False),
    timeout=dict(type='int', default=900),
    append=dict(type='str'),
    remote_dir=dict(type='str', default='/tmp/anemos-deploy'),
    binary=dict(type='path', default='anemos'),
    log_lines=dict(type='int', default=30),
)


def build_argv(binary, params, check_mode):
    """The anemos deploy command line for these module parameters."""
    argv = [binary, 'deploy', params['host'], '--payload', params['payload'],
            '--image', params['image'], '--remote-dir', params['remote_dir'],
            '--timeout', str(params['timeout']), '--json']
    for opt in params['ssh_options']:
        argv += ['--ssh-option', opt]
    if params['network_keep']:
        argv += ['--network', 'keep']
    if params.get('append'):
        argv += ['--append', params['append']]
    argv.append('--plan-only' if check_mode else '--yes')
    return argv


def parse_events(stdout):
    """The JSON event objects in anemos deploy's stdout; other lines are ignored."""
    events = []
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith('{'):
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and 'event' in event:
            events.append(event)
    return events


def summarize(events, stderr, log_lines=30):
    """What the deploy did, from its events: a dict of the module's return values plus `ok`."""
    summary = {'stages': [], 'stage_ms': {}, 'uploads': [], 'duration_ms': 0}
    last_step = 0
    outcome = None
    result = None
    log = []
    for e in events:
        kind = e['event']
        summary['duration_ms'] = max(summary['duration_ms'], e.get('t_ms', 0))
        if kind == 'step':
            last_step = e.get('step', last_step)
        elif kind == 'upload':
            summary['uploads'].append({'file': e.get('file'), 'action': e.get('action')})
        elif kind == 'plan':
            summary['plan'] = e.get('text', '')
        elif kind == 'kexec':
            summary['deploy_id'] = e.get('deploy_id')
        elif kind == 'stage' and e.get('status') != 'begin':
            summary['stages'].append({'stage': e.get('stage'), 'status': e.get('status'), 'ms': e.get('ms')})
            if e.get('ms') is not None:
                summary['stage_ms'][e.get('stage')] = e['ms']
        elif kind == 'log':
            log.append(e.get('line', ''))
        elif kind == 'outcome':
            outcome = e
        elif kind == 'result':
            result = e
    summary['ok'] = bool(result and result.get('ok'))
    if summary['ok']:
        return summary

    if outcome and outcome.get('status') == 'failed':
        summary['failed_stage'] = outcome.get('stage')
        summary['error'] = '\n'.join(outcome.get('error') or [])
        summary['disks_written'] = bool(outcome.get('disks_written'))
    else:
        summary['failed_stage'] = STEP_NAMES.get(last_step, 'start')
        if result and result.get('error'):
            summary['error'] = result['error']
        else:
            lines = [l for l in stderr.splitlines() if l.strip()]
            summary['error'] = lines[-1] if lines else 'anemos deploy ended without a result'
    tail = log if log else stderr.splitlines()
    summary['log_tail'] = tail[-log_lines:] if log_lines > 0 else []
    return summary


def run_anemos(argv, timeout):
    """Runs anemos deploy: (exit status, stdout, stderr). Past `timeout` seconds it is stopped,
    with everything it started (its ssh connections), and the status is None."""
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return None, out, err + '\nanemos deploy did not end within %d s and was stopped' % timeout
    return proc.returncode, out, err


def main():
    module = AnsibleModule(
        argument_spec=ARGUMENT_SPEC,
        supports_check_mode=True,
    )
    p = module.params
    binary = p['binary'] if '/' in p['binary'] else module.get_bin_path(p['binary'], required=True)
    argv = build_argv(binary, p, module.check_mode)
    # Packing, uploads and the remote plan come on top of the wait for the server.
    rc, stdout, stderr = run_anemos(argv, p['timeout'] + 600)
    s = summarize(parse_events(stdout), stderr, p['log_lines'])
    ok = s.pop('ok')
    if ok and rc != 0:
        # A success event but a failed exit: trust the exit status.
        ok = False
        s.update(failed_stage='wait', error='anemos deploy exited with status %s' % rc,
                 log_tail=stderr.splitlines()[-p['log_lines']:])
    s['host'] = p['host']
    s['cmd'] = argv
    if module.check_mode:
        s.pop('deploy_id', None)
    if not ok:
        msg = 'anemos deploy failed in stage %s: %s' % (s['failed_stage'], s.get('error', ''))
        s['rc'] = rc
        module.fail_json(msg=msg, changed='deploy_id' in s, **s)
    if module.check_mode and module._diff:
        s['diff'] = {'prepared': s.get('plan', '')}
    s['msg'] = ('plan for %s (nothing changed)' % p['host'] if module.check_mode
                else '%s runs the deployed system, deploy id %s' % (p['host'], s.get('deploy_id')))
    module.exit_json(changed=True, **s)


if __name__ == '__main__':
    main()
