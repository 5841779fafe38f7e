/** What a read that got no answer tells the person: start a worker, or look at the one that hangs (client/queue-pollers.ts). */
import { LIVE_POLLER_MS, silentReadReason } from '../../client/queue-pollers';

const queue = 'forge-orchestrator-read';

test('nobody polls: start a worker with the backend in its config', () => {
  expect(silentReadReason('akash', { queue, live: [], stale: [] })).toBe(
    'no orchestrator worker polls forge-orchestrator-read: start one (npm start, or the orchestrator role) with backend "akash" in its FORGE_CONFIG',
  );
});

test('only workers the server has not seen lately: named with when they were last seen, still "start one"', () => {
  const stale = [{ identity: 'host-z-read', agoMs: LIVE_POLLER_MS + 300_000 }, { identity: 'host-a-read', agoMs: LIVE_POLLER_MS + 30_000 }];
  expect(silentReadReason('akash', { queue, live: [], stale })).toMatch(
    /^no orchestrator worker polls forge-orchestrator-read \(the last one, host-a-read, was seen 120 s ago\): start one/,
  );
});

test('a live worker polls: it is named, and the backend call there is what to look at', () => {
  const live = [{ identity: 'host-b-read', agoMs: 2000 }, { identity: 'host-c-read', agoMs: undefined }];
  const reason = silentReadReason('akash', { queue, live, stale: [] });
  expect(reason).toMatch(/^the orchestrator worker polling forge-orchestrator-read \(host-b-read, host-c-read\) is up but did not answer: the backend's call is slow or hangs there/);
  expect(reason).not.toMatch(/start one/);
});
