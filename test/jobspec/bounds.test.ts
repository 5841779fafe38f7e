/**
 * The schema's bounds (issue 13 point 4, issue 14 point 2): numbers no workflow can trip over, a short fallbacks list
 * checked in linear time, and no control or bidi character in any string of the spec, each refused naming the field.
 */
import { parseTrainingJobSpec } from '../../jobspec/parse';
import { findControlCharacters } from '../../jobspec/control-chars';
import { makeSignedSpec } from './fixtures';

function issuesOf(overrides: object): { path: string; message: string }[] {
  const r = parseTrainingJobSpec(makeSignedSpec(overrides));
  return r.ok ? [] : r.issues;
}

const cases: [string, object, string][] = [
  ['backend.max_retries 1e9', { backend: { max_retries: 1e9 } }, 'backend.max_retries'],
  ['backend.max_retries 101', { backend: { max_retries: 101 } }, 'backend.max_retries'],
  ['resources.max_hours 1e10', { resources: { max_hours: 1e10 } }, 'resources.max_hours'],
  ['resources.max_hours just over a year', { resources: { max_hours: 8761 } }, 'resources.max_hours'],
  ['created_at past the year 9999', { created_at: 1e15 }, 'created_at'],
  ['17 fallbacks', { backend: { fallbacks: Array.from({ length: 17 }, (_, i) => `b${i}`) } }, 'backend.fallbacks'],
  ['a NUL and a bidi override in base_model.name', { base_model: { name: '\u202e\u0000evil' } }, 'base_model.name'],
  ['a DEL in objective.optimize_for', { objective: { optimize_for: 'loss\u007f' } }, 'objective.optimize_for'],
  ['a C1 character in a task type', { objective: { task_types: ['ok', 'bad\u0085'] } }, 'objective.task_types.1'],
  ['a bidi isolate in notifications.on_complete', { notifications: { on_complete: 'https://x.example/\u2066' } }, 'notifications.on_complete'],
  ['a newline in backend.region', { backend: { region: 'eu\nus' } }, 'backend.region'],
  ['a tab in $schema', { $schema: 'x\ty' }, '$schema'],
];

test.each(cases)('%s is refused, naming the field', (_name, overrides, field) => {
  expect(issuesOf(overrides).map((i) => i.path)).toContain(field);
});

test('the bounds themselves are accepted', () => {
  expect(issuesOf({ backend: { max_retries: 100, fallbacks: Array.from({ length: 16 }, (_, i) => `b${i}`) }, resources: { max_hours: 8760 } })).toEqual([]);
  // Printable non-ASCII is fine: only control and bidi characters are refused.
  expect(issuesOf({ base_model: { name: 'modèle-日本語-😀' } })).toEqual([]);
});

test('the control-character message says which character and what to do', () => {
  const [issue] = issuesOf({ base_model: { name: 'a\u202eb' } });
  expect(issue).toEqual({ path: 'base_model.name', message: expect.stringMatching(/U\+202E.*sign the spec again/) });
});

// Not a timed assertion: 370,000 fallbacks take well under a second when checked in one pass, and minutes with the
// old quadratic duplicate check (~1.25 s for 37,000), far past this test's 30 s limit.
test('370 000 fallbacks are refused in one pass over them (no quadratic duplicate check)', () => {
  const fallbacks = Array.from({ length: 370_000 }, (_, i) => (i % 2 ? 'a' : `b${i}`));
  const r = parseTrainingJobSpec(makeSignedSpec({ backend: { fallbacks } }));
  expect(r.ok).toBe(false);
  expect(!r.ok && r.issues.map((i) => i.path)).toContain('backend.fallbacks');
}, 30_000);

test('duplicate fallbacks within the bound are still named one by one', () => {
  expect(issuesOf({ backend: { fallbacks: ['a', 'b', 'a', 'b'] } }).map((i) => i.path)).toEqual(['backend.fallbacks.2', 'backend.fallbacks.3']);
});

test('findControlCharacters walks deep values without recursion and names keys too', () => {
  let deep: unknown = 'bottom\u0000';
  for (let i = 0; i < 100_000; i++) deep = [deep];
  const [hit] = findControlCharacters(deep);
  expect(hit?.path).toHaveLength(100_000);
  expect(findControlCharacters({ ok: 'fine', ['k\u2069']: 1 })).toEqual([{ path: ['k\u2069'], character: 'U+2069' }]);
  expect(findControlCharacters({ a: Array.from({ length: 500 }, () => '\u0001') }, 3)).toHaveLength(3);
});
