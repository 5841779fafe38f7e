/**
 * The trainer host's wire (activities/rl/host/wire-schemas.ts) as JSON Schema: committed as
 * trainer/schemas/grpo-wire-v1.schema.json, where the trainer's tests check the real process's answers against it.
 */
import { join } from 'node:path';
import { expectCommittedAsGenerated } from '../helpers/generated-file';
import { GRPO_WIRE_SCHEMA_ID, grpoWireJsonSchema, servingSchema, stepSchema } from '../../activities/rl/host/wire-schemas';

const SCHEMA_FILE = join(__dirname, '..', '..', 'trainer', 'schemas', 'grpo-wire-v1.schema.json');

describe('grpo-wire-v1 JSON Schema', () => {
  it('is committed as trainer/schemas/grpo-wire-v1.schema.json, exactly as generated', () => {
    expectCommittedAsGenerated(SCHEMA_FILE, grpoWireJsonSchema(), 'activities/rl/host/wire-schemas.ts', __filename);
  });

  it('names every message, and leaves out what old trainers do not send', () => {
    const schema = grpoWireJsonSchema() as { $id: string; $defs: Record<string, { required?: string[] }> };
    expect(schema.$id).toBe(GRPO_WIRE_SCHEMA_ID);
    expect(Object.keys(schema.$defs).sort()).toEqual(['error', 'export', 'rolloutTexts', 'serving', 'step', 'updateRequest', 'verifyAnswer']);
    // A trainer from before pipelining prints no pipeline_depth: the host reads it as 1, so the schema must not demand it.
    expect(schema.$defs.serving!.required).not.toContain('pipeline_depth');
    expect(servingSchema.parse({ event: 'serving', url: 'http://h:1', version: 0, sha256: 'x', resumed_from: null }).pipeline_depth).toBe(1);
    expect(schema.$defs.step!.required).toEqual(expect.arrayContaining(['step', 'policy_version', 'version', 'sha256', 'checkpoint']));
    expect(schema.$defs.step!.required).not.toContain('grad_norm');
    expect(() => stepSchema.parse({ step: 0 })).toThrow();
  });
});
