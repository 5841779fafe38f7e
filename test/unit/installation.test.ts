/**
 * Installation tags in provider-visible names (activities/backends/installation.ts): the reaper of one installation
 * tells its deployments from those of another sharing the provider account, and still takes untagged (older) ones.
 */
import { forgeGroupName, parseForgeGroupName } from '../../activities/backends/akash/akash-sdl';
import { isOurs } from '../../activities/backends/installation';
import { installationTag } from '../../common/orchestrator-key';
import { parsePodName, podName } from '../../activities/backends/prime-intellect/pi-api';
import { generateKeyPair } from '../../jobspec/signing';

const JOB = '0b7a6c1e-5d4f-4a3b-9c2d-1e0f9a8b7c6d';

test('a tag is 8 hex digits, the same for one identity and different for another', () => {
  const a = generateKeyPair().did;
  const b = generateKeyPair().did;
  expect(installationTag(a)).toMatch(/^[0-9a-f]{8}$/);
  expect(installationTag(a)).toBe(installationTag(a));
  expect(installationTag(a)).not.toBe(installationTag(b));
});

test('Akash group names carry the tag and give it back; untagged marks still parse, with no tag', () => {
  expect(forgeGroupName('dcloud', JOB, 3, 'a1b2c3d4')).toBe(`dcloud-forge-a1b2c3d4-${JOB}-a3`);
  expect(parseForgeGroupName(forgeGroupName('dcloud', JOB, 3, 'a1b2c3d4'))).toEqual({ jobId: JOB, attempt: 3, tag: 'a1b2c3d4' });
  expect(parseForgeGroupName(forgeGroupName('dcloud', JOB, 3))).toEqual({ jobId: JOB, attempt: 3 });
  expect(parseForgeGroupName('dcloud')).toBeUndefined();
  expect(parseForgeGroupName(`dcloud-forge-XYZ-${JOB}-a1`)).toBeUndefined();
});

test('Prime Intellect pod names carry the tag and give it back; untagged and older names still parse', () => {
  expect(podName(JOB, 2, 'a1b2c3d4')).toBe(`forge-a1b2c3d4-${JOB}-2`);
  expect(parsePodName(podName(JOB, 2, 'a1b2c3d4'))).toEqual({ jobId: JOB, attempt: 2, tag: 'a1b2c3d4' });
  expect(parsePodName(podName(JOB, 2))).toEqual({ jobId: JOB, attempt: 2 });
  expect(parsePodName('forge-job-7-1')).toEqual({ jobId: 'job-7', attempt: 1 });
  expect(parsePodName('my-notebook')).toBeUndefined();
});

test('ours: our tag and untagged marks; never another tag, nor any tag when we have none', () => {
  expect(isOurs('a1b2c3d4', 'a1b2c3d4')).toBe(true);
  expect(isOurs(undefined, 'a1b2c3d4')).toBe(true);
  expect(isOurs('deadbeef', 'a1b2c3d4')).toBe(false);
  expect(isOurs('deadbeef', undefined)).toBe(false);
});

test("after a key rotation: the earlier keys' tags (reaper.earlier_tags) are ours too, other tags still never", () => {
  expect(isOurs('0badc0de', 'a1b2c3d4', ['0badc0de'])).toBe(true);
  expect(isOurs('a1b2c3d4', 'a1b2c3d4', ['0badc0de'])).toBe(true);
  expect(isOurs('deadbeef', 'a1b2c3d4', ['0badc0de'])).toBe(false);
});
