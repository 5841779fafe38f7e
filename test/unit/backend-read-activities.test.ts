/** The read entity's activity (activities/backends/read-activities.ts): long lines are cut, event reads page to a boundary. */
import { createBackendReadActivities, MAX_EVENT_PAGES, MAX_READ_LINE_CHARS } from '../../activities/backends/read-activities';
import type { BackendReader, DeploymentRef, LogChunk } from '../../activities/backends/types';

const ref: DeploymentRef = { backend: 'pages', kind: 'fake', id: 'd', jobId: 'j', attempt: 1, submittedAt: '2026-01-01T00:00:00Z', data: {} };

/** A backend whose log is `pages`, one page per logs() call; the cursor is the next page's index. */
function paged(pages: LogChunk['lines'][]): BackendReader & { calls: number } {
  const b = {
    name: 'pages',
    kind: 'fake',
    calls: 0,
    health: async () => ({ ok: true, detail: 'fake' }),
    collectArtifacts: async () => [],
    async logs(_d: DeploymentRef, cursor?: string): Promise<LogChunk> {
      b.calls++;
      const at = Number(cursor ?? 0);
      return at < pages.length ? { lines: pages[at]!, cursor: String(at + 1) } : { lines: [], cursor: String(at) };
    },
  };
  return b;
}

/** An activity never cancelled (these run outside a Temporal activity context). */
const never = (): Promise<never> => new Promise<never>(() => undefined);

const out = (line: string) => ({ stream: 'stdout' as const, line });

test('a cancelled read ends at once, though the backend never answers', async () => {
  const hung: BackendReader = { ...paged([]), health: () => new Promise(() => undefined) };
  const acts = createBackendReadActivities(new Map([['pages', hung]]), () => Promise.reject(new Error('cancelled: the worker shuts down')));
  await expect(acts.readBackend('pages', { op: 'health' })).rejects.toThrow('cancelled: the worker shuts down');
});

test('a line over MAX_READ_LINE_CHARS is cut, saying how much is left out; shorter ones pass whole', async () => {
  const long = 'x'.repeat(MAX_READ_LINE_CHARS + 500);
  const acts = createBackendReadActivities(new Map([['pages', paged([[out('short'), out(long)]])]]), never);
  const r = await acts.readBackend('pages', { op: 'logs', deployment: ref });
  expect(r).toEqual({ op: 'logs', chunk: { lines: [out('short'), out(`${'x'.repeat(MAX_READ_LINE_CHARS)}… (500 more characters)`)], cursor: '1' } });
});

test("an events read keeps stdout's JSON lines of many pages, up to the end of the log or MAX_EVENT_PAGES", async () => {
  const page = (i: number): LogChunk['lines'] => [out(`{"event":"progress","step":${i}}`), out('plain'), { stream: 'stderr', line: '{"not":"stdout"}' }];
  const backend = paged(Array.from({ length: MAX_EVENT_PAGES + 5 }, (_, i) => page(i)));
  const acts = createBackendReadActivities(new Map([['pages', backend]]), never);
  const first = await acts.readBackend('pages', { op: 'logs', deployment: ref, events: true });
  if (first.op !== 'logs') throw new Error('not logs');
  expect(first.chunk.lines).toHaveLength(MAX_EVENT_PAGES);
  expect(first.chunk.cursor).toBe(String(MAX_EVENT_PAGES)); // a page boundary: the next read starts there
  const rest = await acts.readBackend('pages', { op: 'logs', deployment: ref, cursor: first.chunk.cursor, events: true });
  expect(rest).toEqual({ op: 'logs', chunk: { lines: [5, 4, 3, 2, 1].map((k) => out(`{"event":"progress","step":${MAX_EVENT_PAGES + 5 - k}}`)), cursor: String(MAX_EVENT_PAGES + 5) } });
  await expect(acts.readBackend('elsewhere', { op: 'health' })).rejects.toThrow(/backend "elsewhere" is not configured on this orchestrator worker; configured: pages/);
});
