/** What an Akash manifest is rebuilt from on another replica: the spec and eval inputs round trip, the size cap, the version check. */
import {
  checkEvalSize,
  checkRebuiltVersion,
  manifestSourceOf,
  manifestSourceSchema,
  MAX_EVAL_SUITE_B64_BYTES,
  specFromSource,
} from '../../activities/backends/akash/akash-manifest-source';
import { recordSchema } from '../../activities/backends/akash/akash-records';
import { trainingJobSpecSchema } from '../../jobspec/schema';
import { makeSignedSpec } from '../jobspec/fixtures';

describe('akash manifest source', () => {
  const raw = makeSignedSpec({ trainer: { image: 'ok' }, backend: { provider: 'akash', max_cost_usd: 50 } });
  const spec = trainingJobSpecSchema.parse(raw);

  test('a JSON signed spec and a text one come back as they were submitted', () => {
    expect(specFromSource(manifestSourceOf({ spec, raw }), '7')).toEqual({ signed: { spec, raw } });
    const text = `${JSON.stringify(raw, null, 2)}\n`;
    expect(specFromSource(manifestSourceOf({ spec, raw: text }), '7')).toEqual({ signed: { spec, raw: text } });
  });

  test("an eval attempt's inputs round-trip through the source as stored (JSON), and a source without them still parses", () => {
    const evalRun = {
      suite: { toy: '{"tasks": []}\n', vcs: '{"tasks": [{"id": "v1"}]}\n' },
      model: { kind: 'git' as const, repo: 'file:///srv/models.git', branch: 'jobs/x', commit: 'a'.repeat(40), path: 'models/job-x' },
    };
    const source = manifestSourceOf({ spec, raw }, evalRun);
    const stored = manifestSourceSchema.parse(JSON.parse(JSON.stringify(source)));
    expect(specFromSource(stored, '7')).toEqual({ signed: { spec, raw }, evalRun });
    // Suite only (an eval job: its base model), and as a record on disk keeps it.
    const suiteOnly = { suite: { toy: 'x' } };
    expect(specFromSource(manifestSourceSchema.parse(JSON.parse(JSON.stringify(manifestSourceOf({ spec, raw }, suiteOnly)))), '7').evalRun).toEqual(suiteOnly);
    // A training attempt's source, and a record from before eval attempts ran on Akash: no evalRun, nothing else changes.
    const training = manifestSourceOf({ spec, raw });
    expect(training).not.toHaveProperty('evalRun');
    expect(specFromSource(training, '7')).toEqual({ signed: { spec, raw } });
    const old = { manifestVersion: 'ab', createdAt: 'now', bidDeadline: 'now', capAmount: 1, capUsd: 1, source: { spec: training.spec, raw: training.raw, kind: 'json' } };
    expect(recordSchema.parse(old).source).toEqual({ spec: training.spec, raw: training.raw, kind: 'json' });
    // A damaged one does not pass as eval inputs.
    expect(manifestSourceSchema.safeParse({ ...training, evalRun: { suite: { toy: 1 } } }).success).toBe(false);
  });

  test('a suite over the cap is REJECTED, saying what to do', () => {
    expect(() => checkEvalSize({ suite: { toy: 'x'.repeat(1000) } }, 'akash')).not.toThrow();
    const big = { suite: { toy: 'x'.repeat(MAX_EVAL_SUITE_B64_BYTES) } };
    expect(() => checkEvalSize(big, 'gpu-market')).toThrow(
      expect.objectContaining({
        failureClass: 'REJECTED',
        message: expect.stringMatching(/the eval suite \(toy\) is \d+ bytes as FORGE_EVAL_SUITE_B64, over the 98304 .*set results\.evaluation\.backends\.gpu-market to "orchestrator"/),
      }),
    );
  });

  test('a damaged source is LOST, naming the deployment', () => {
    expect(() => specFromSource({ spec: '{', raw: '{}', kind: 'json' }, '7')).toThrow(expect.objectContaining({ failureClass: 'LOST', message: expect.stringMatching(/deployment 7: the spec in its deployment ref is not JSON/) }));
    expect(() => specFromSource({ spec: '{}', raw: '{}', kind: 'json' }, '7')).toThrow(expect.objectContaining({ failureClass: 'LOST', message: expect.stringMatching(/no longer parses/) }));
  });

  test('only the committed version passes', () => {
    expect(() => checkRebuiltVersion({ rebuilt: 'aa', committed: 'aa', dseq: '7', backend: 'akash', attempt: 1 })).not.toThrow();
    expect(() => checkRebuiltVersion({ rebuilt: 'aa', committed: 'bb', dseq: '7', backend: 'akash', attempt: 2 })).toThrow(/version aa\) is not the one the deployment committed \(bb\); backends\.akash .* attempt 2: give every replica the same operator config/);
  });
});
