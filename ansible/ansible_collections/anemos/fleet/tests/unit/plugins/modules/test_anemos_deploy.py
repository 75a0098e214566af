# Unit tests of the anemos_deploy module: its command line, its reading of `anemos deploy
# --json` events, and whole module runs against a stand-in anemos binary that prints them.
# fixtures/: success.events and failed-before-write.events were recorded from QEMU deploys (the
# deploy-watch and redeploy-fails-early scenarios); plan-only.events is the start of
# success.events up to the plan, as `anemos deploy --plan-only` ends (3 steps, then the result).
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import stat
import sys

import pytest

from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes
from ansible_collections.anemos.fleet.plugins.modules import anemos_deploy

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures')


def fixture(name):
    with open(os.path.join(FIXTURES, name)) as f:
        return f.read()


PARAMS = {
    'host': 'root@10.0.0.7', 'payload': '/p/web1', 'image': '/i/base.img',
    'remote_dir': '/tmp/anemos-deploy', 'timeout': 600, 'ssh_options': ['Port=2222', 'IdentityFile=/k'],
    'network_keep': False, 'append': None,
}


def test_argv_deploys_with_yes_and_passes_every_option():
    p = dict(PARAMS, network_keep=True, append='anemos.countdown=1')
    argv = anemos_deploy.build_argv('/usr/bin/anemos', p, check_mode=False)
    assert argv == [
        '/usr/bin/anemos', 'deploy', 'root@10.0.0.7', '--payload', '/p/web1', '--image', '/i/base.img',
        '--remote-dir', '/tmp/anemos-deploy', '--timeout', '600', '--json',
        '--ssh-option', 'Port=2222', '--ssh-option', 'IdentityFile=/k',
        '--network', 'keep', '--append', 'anemos.countdown=1', '--yes',
    ]


def test_argv_in_check_mode_only_plans():
    argv = anemos_deploy.build_argv('anemos', PARAMS, check_mode=True)
    assert argv[-1] == '--plan-only'
    assert '--yes' not in argv and '--network' not in argv and '--append' not in argv


def test_parse_events_skips_what_is_not_an_event():
    out = 'noise\n{"t_ms":1,"event":"step","step":1}\n{broken\n{"no_event":1}\n'
    assert anemos_deploy.parse_events(out) == [{'t_ms': 1, 'event': 'step', 'step': 1}]


def test_summary_of_a_successful_deploy():
    s = anemos_deploy.summarize(anemos_deploy.parse_events(fixture('success.events')), '')
    assert s['ok'] is True
    assert s['deploy_id'] == 'anemos-1796031807-61df0e50'
    assert s['stage_ms']['install'] == 17177
    assert s['stage_ms']['partition'] == 112
    names = [st['stage'] for st in s['stages']]
    assert names.index('partition') < names.index('mkfs') < names.index('install') < names.index('bootloader')
    assert len(s['uploads']) == 4 and s['uploads'][0]['action'] == 'uploaded'
    assert 'DESTROYED' in s['plan']
    assert s['duration_ms'] == 57475
    assert 'failed_stage' not in s


def test_summary_of_a_deploy_that_failed_before_writing():
    s = anemos_deploy.summarize(anemos_deploy.parse_events(fixture('failed-before-write.events')), '', log_lines=5)
    assert s['ok'] is False
    assert s['failed_stage'] == 'plan'
    assert 'found no disk' in s['error']
    assert s['disks_written'] is False
    assert s['deploy_id'] == 'anemos-1796030379-edd93579'
    assert len(s['log_tail']) == 5
    assert 'holding 120 s for a watcher' in s['log_tail'][-1]


def test_summary_when_the_server_refused_the_plan():
    events = [
        {'t_ms': 1, 'event': 'step', 'step': 1, 'of': 6},
        {'t_ms': 2, 'event': 'step', 'step': 2, 'of': 6},
        {'t_ms': 3, 'event': 'step', 'step': 3, 'of': 6},
        {'t_ms': 9, 'event': 'result', 'ok': False, 'host': 'h', 'deploy_id': 'x',
         'error': 'the server refused the deploy (see above); nothing was changed'},
    ]
    s = anemos_deploy.summarize(events, 'deploy: [3/6] the plan\nanemos: error: no disk\n')
    assert s['failed_stage'] == 'remote-plan'
    assert s['error'].startswith('the server refused the deploy')
    assert s['log_tail'] == ['deploy: [3/6] the plan', 'anemos: error: no disk']
    assert 'deploy_id' not in s


def test_summary_without_any_event():
    s = anemos_deploy.summarize([], 'anemos: error: --image x: No such file\n')
    assert s['ok'] is False
    assert s['failed_stage'] == 'start'
    assert s['error'] == 'anemos: error: --image x: No such file'


def fake_anemos(tmp_path, events_name, status):
    """A stand-in anemos: records its arguments, prints a recorded event stream, exits `status`."""
    script = tmp_path / 'anemos'
    script.write_text(
        '#!%s\nimport sys\n'
        'open(%r, "w").write("\\n".join(sys.argv[1:]))\n'
        'sys.stdout.write(open(%r).read())\n'
        'sys.stderr.write("deploy: messages\\n")\n'
        'sys.exit(%d)\n' % (sys.executable, str(tmp_path / 'argv'), os.path.join(FIXTURES, events_name), status))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def run_module(monkeypatch, capsys, args):
    monkeypatch.setattr(basic, '_ANSIBLE_ARGS', to_bytes(json.dumps({'ANSIBLE_MODULE_ARGS': args})))
    with pytest.raises(SystemExit):
        anemos_deploy.main()
    return json.loads(capsys.readouterr().out)


def module_args(tmp_path, binary, **extra):
    args = {'host': 'root@127.0.0.1', 'payload': str(tmp_path / 'payload'), 'image': str(tmp_path / 'base.img'),
            'ssh_options': ['Port=2222'], 'binary': str(binary)}
    args.update(extra)
    return args


def test_module_reports_a_deploy_as_changed(tmp_path, monkeypatch, capsys):
    binary = fake_anemos(tmp_path, 'success.events', 0)
    r = run_module(monkeypatch, capsys, module_args(tmp_path, binary, timeout=30))
    assert r['changed'] is True and not r.get('failed')
    assert r['deploy_id'] == 'anemos-1796031807-61df0e50'
    assert r['stage_ms']['mkfs'] == 1705
    argv = (tmp_path / 'argv').read_text().split('\n')
    assert argv[:2] == ['deploy', 'root@127.0.0.1'] and argv[-1] == '--yes'
    assert argv[argv.index('--timeout') + 1] == '30'


def test_module_failure_names_the_stage_and_error(tmp_path, monkeypatch, capsys):
    binary = fake_anemos(tmp_path, 'failed-before-write.events', 1)
    r = run_module(monkeypatch, capsys, module_args(tmp_path, binary))
    assert r['failed'] is True
    assert r['failed_stage'] == 'plan'
    assert r['msg'].startswith('anemos deploy failed in stage plan: disk "system"')
    assert r['disks_written'] is False
    assert r['rc'] == 1
    assert r['log_tail'][-1].startswith('anemos: holding 120 s')


def test_module_does_not_trust_a_success_event_with_a_failed_exit(tmp_path, monkeypatch, capsys):
    binary = fake_anemos(tmp_path, 'success.events', 3)
    r = run_module(monkeypatch, capsys, module_args(tmp_path, binary))
    assert r['failed'] is True
    assert r['error'] == 'anemos deploy exited with status 3'


def test_check_mode_plans_only_and_shows_the_plan_as_diff(tmp_path, monkeypatch, capsys):
    binary = fake_anemos(tmp_path, 'plan-only.events', 0)
    r = run_module(monkeypatch, capsys, module_args(tmp_path, binary, _ansible_check_mode=True, _ansible_diff=True))
    assert r['changed'] is True and not r.get('failed')
    argv = (tmp_path / 'argv').read_text().split('\n')
    assert argv[-1] == '--plan-only' and '--yes' not in argv
    assert 'DESTROYED: every partition' in r['diff']['prepared']
    assert r['diff']['prepared'] == r['plan']
    assert 'deploy_id' not in r


def test_documentation_matches_the_argument_spec():
    import yaml
    doc = yaml.safe_load(anemos_deploy.DOCUMENTATION)['options']
    assert sorted(doc) == sorted(anemos_deploy.ARGUMENT_SPEC)
    for name, spec in anemos_deploy.ARGUMENT_SPEC.items():
        assert doc[name]['type'] == spec['type'], name
        assert doc[name].get('default') == spec.get('default'), name
        assert doc[name].get('required', False) == spec.get('required', False), name
        assert doc[name].get('elements') == spec.get('elements'), name
    yaml.safe_load(anemos_deploy.EXAMPLES)
    yaml.safe_load(anemos_deploy.RETURN)


def test_ansible_doc_renders_the_module():
    import subprocess
    root = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..', '..', '..', '..', '..'))
    ansible_doc = os.path.join(os.path.dirname(sys.executable), 'ansible-doc')
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=root, ANSIBLE_NOCOLOR='1')
    r = subprocess.run([ansible_doc, 'anemos.fleet.anemos_deploy'], env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert 'MODULE anemos.fleet.anemos_deploy' in r.stdout
    for word in ('OPTIONS', 'EXAMPLES', 'RETURN VALUES', 'failed_stage', 'stage_ms', 'network_keep'):
        assert word in r.stdout, word


def test_a_deploy_past_the_timeout_is_stopped_with_its_children(tmp_path):
    marker = tmp_path / 'child-alive'
    script = tmp_path / 'slow'
    # The child outlives its parent unless the whole session is stopped.
    script.write_text('#!/bin/sh\n(sleep 3; touch %s) &\necho started\nsleep 30\n' % marker)
    script.chmod(0o755)
    rc, out, err = anemos_deploy.run_anemos([str(script)], timeout=1)
    assert rc is None
    assert out == 'started\n'
    assert err.endswith('did not end within 1 s and was stopped')
    import time
    time.sleep(4)
    assert not marker.exists()
