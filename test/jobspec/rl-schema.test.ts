/** The optional `rl` block (jobspec/rl.ts): defaults, the values it refuses (each issue naming its field), rl jobs only. */
import { parseTrainingJobSpec } from '../../jobspec/parse';
import { resolveRl, rlSchema } from '../../jobspec/rl';
import { trainingJobJsonSchema } from '../../jobspec/json-schema';
import { makeSignedSpec } from './fixtures';

const rlSpec = (rl?: object) => makeSignedSpec({ job_type: 'rl', ...(rl === undefined ? {} : { rl }) });

function issuesOf(input: unknown): { path: string; message: string }[] {
  const r = parseTrainingJobSpec(input);
  if (r.ok) throw new Error('expected the spec to be refused');
  return r.issues;
}

describe('spec rl block', () => {
  it('has defaults for every key, and for an absent block', () => {
    const defaults = {
      group_size: 8,
      prompts_per_step: 8,
      max_off_policy_steps: 1,
      clip_epsilon: 0.2,
      kl_beta: 0.04,
      temperature: 1,
      max_completion_tokens: 256,
    };
    const absent = parseTrainingJobSpec(rlSpec());
    expect(absent.ok && absent.spec.rl).toBeUndefined();
    expect(resolveRl(undefined)).toEqual(defaults);
    const empty = parseTrainingJobSpec(rlSpec({}));
    expect(empty.ok && empty.spec.rl).toEqual(defaults);
    const some = parseTrainingJobSpec(rlSpec({ group_size: 4, max_off_policy_steps: 0 }));
    expect(some.ok && some.spec.rl).toEqual({ ...defaults, group_size: 4, max_off_policy_steps: 0 });
  });

  it.each([
    [{ group_size: 1 }, 'rl.group_size'],
    [{ group_size: 2.5 }, 'rl.group_size'],
    [{ group_size: 129 }, 'rl.group_size'],
    [{ prompts_per_step: 0 }, 'rl.prompts_per_step'],
    [{ max_off_policy_steps: -1 }, 'rl.max_off_policy_steps'],
    [{ max_off_policy_steps: 17 }, 'rl.max_off_policy_steps'],
    [{ clip_epsilon: 0 }, 'rl.clip_epsilon'],
    [{ clip_epsilon: 1 }, 'rl.clip_epsilon'],
    [{ kl_beta: -0.1 }, 'rl.kl_beta'],
    [{ temperature: 0 }, 'rl.temperature'],
    [{ temperature: 2.5 }, 'rl.temperature'],
    [{ max_completion_tokens: 0 }, 'rl.max_completion_tokens'],
    [{ group_size: '8' }, 'rl.group_size'],
    [{ learning_rate: 0.1 }, 'rl.learning_rate'],
  ])('refuses %j at %s', (rl, path) => {
    const issues = issuesOf(rlSpec(rl));
    expect(issues.map((i) => i.path)).toEqual([path]);
    expect(issues[0]!.message).not.toBe('');
  });

  it('is refused on other job types', () => {
    expect(issuesOf(makeSignedSpec({ job_type: 'finetune', rl: { group_size: 4 } }))).toEqual([{ path: 'rl', message: 'only for job_type "rl" (this job is "finetune")' }]);
  });

  it('is optional in the JSON Schema, every key defaulted', () => {
    const schema = trainingJobJsonSchema() as { required: string[]; properties: { rl: { required?: string[]; additionalProperties: boolean } } };
    expect(schema.required).not.toContain('rl');
    expect(schema.properties.rl.required ?? []).toEqual([]);
    expect(schema.properties.rl.additionalProperties).toBe(false);
    expect(rlSchema.parse({}).group_size).toBe(8);
  });
});
