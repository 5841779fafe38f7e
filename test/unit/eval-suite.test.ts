import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { applyEditBlocks, checkAnswer, defaultSuiteDir, EvalSuiteError, loadSuite, renderPrompt, suiteTaskTypes } from '../../activities/eval-suite';
import { describeNotificationTarget, notificationTargetKind } from '../../jobspec/notification-target';

test('the shipped suite: file-edit, toy and vcs, every task file valid', () => {
  const dir = defaultSuiteDir();
  expect(suiteTaskTypes(dir)).toEqual(['file-edit', 'toy', 'vcs']);
  for (const t of suiteTaskTypes(dir)) {
    const suite = loadSuite(dir, t)!;
    expect(suite.task_type).toBe(t);
    expect(suite.sha256).toMatch(/^[0-9a-f]{64}$/);
    // Each checker passes its own reference answer.
    for (const task of suite.tasks) {
      const c = task.check;
      const reference =
        c.kind === 'exact' ? c.expected : c.kind === 'edit' ? `<<<<<<< SEARCH\n${c.before}=======\n${c.after}>>>>>>> REPLACE` : c.kind === 'json_field' ? JSON.stringify({ [c.field]: c.equals }) : undefined;
      if (reference !== undefined) expect({ id: task.id, ...checkAnswer(c, reference) }).toMatchObject({ id: task.id, success: true });
    }
  }
  expect(loadSuite(dir, 'no-such-type')).toBeUndefined();
  expect(loadSuite(dir, '../etc')).toBeUndefined();
});

test('checkers are deterministic and say why', () => {
  expect(checkAnswer({ kind: 'exact', expected: 'cba' }, ' cba\n')).toEqual({ success: true, detail: 'exact match' });
  expect(checkAnswer({ kind: 'exact', expected: 'cba' }, 'abc').detail).toBe('expected "cba", got "abc"');
  expect(checkAnswer({ kind: 'regex', pattern: '^git (switch -c|checkout -b) x$', flags: '' }, ' git switch -c x').success).toBe(true);
  expect(checkAnswer({ kind: 'regex', pattern: '^git add -A$', flags: '' }, 'git add').success).toBe(false);
  expect(checkAnswer({ kind: 'json_field', field: 'a.b', equals: 2 }, 'sure: {"a": {"b": 2}} done').success).toBe(true);
  expect(checkAnswer({ kind: 'json_field', field: 'a.b', equals: 2 }, '{"a": {"b": "2"}}').detail).toBe('a.b is "2", expected 2');
  expect(checkAnswer({ kind: 'json_field', field: 'a', equals: 1 }, 'no json').detail).toBe('no JSON object in the answer');
});

test('edits: SEARCH/REPLACE blocks applied in order, each SEARCH exactly once', () => {
  const before = 'a = 1\nb = 2\nc = 1\n';
  expect(applyEditBlocks(before, '<<<<<<< SEARCH\nb = 2\n=======\nb = 3\n>>>>>>> REPLACE')).toEqual({ ok: true, after: 'a = 1\nb = 3\nc = 1\n' });
  expect(applyEditBlocks(before, 'x\n<<<<<<< SEARCH\na = 1\n=======\na = 0\n>>>>>>> REPLACE\n<<<<<<< SEARCH\nc = 1\n=======\n>>>>>>> REPLACE')).toEqual({ ok: true, after: 'a = 0\nb = 2\n\n' });
  expect(applyEditBlocks(before, '<<<<<<< SEARCH\n= 1\n=======\n= 5\n>>>>>>> REPLACE')).toEqual({ ok: false, reason: 'block 1: SEARCH text occurs more than once' });
  expect(applyEditBlocks(before, '<<<<<<< SEARCH\nz\n=======\ny\n>>>>>>> REPLACE')).toEqual({ ok: false, reason: 'block 1: SEARCH text not found in the file' });
  expect(applyEditBlocks(before, 'b = 3')).toEqual({ ok: false, reason: 'no SEARCH/REPLACE block in the answer' });
  const edit = { id: 'e', prompt: 'File {{file}}:\n{{before}}', max_tokens: 8, check: { kind: 'edit' as const, file: 'x.py', before: 'v = 1\n', after: 'v = 2\n' } };
  expect(renderPrompt(edit)).toBe('File x.py:\nv = 1\n');
});

test('a broken task file is an error naming the file and the field', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'forge-suite-'));
  writeFileSync(path.join(dir, 'bad.json'), JSON.stringify({ task_type: 'bad', version: 1, description: '', tasks: [{ id: 'x', prompt: 'p', check: { kind: 'regex', pattern: '(' } }] }));
  expect(() => loadSuite(dir, 'bad')).toThrow(EvalSuiteError);
  expect(() => loadSuite(dir, 'bad')).toThrow(/bad\.json: tasks\.0\.check\.pattern: must be a valid regular expression/);
});

test('notification targets: nostr npubs as they are, webhooks by origin only', () => {
  expect(notificationTargetKind('nostr:npub1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqsyhj3s8')).toBe('nostr');
  expect(notificationTargetKind('https://hooks.example.com/T000/B000/secret')).toBe('webhook');
  expect(notificationTargetKind('http://hooks.example.com/x')).toBeUndefined();
  expect(describeNotificationTarget('https://hooks.example.com/T000/B000/secret?x=1')).toBe('https://hooks.example.com/…');
});
