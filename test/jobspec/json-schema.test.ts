import { join } from 'node:path';
import { expectCommittedAsGenerated } from '../helpers/generated-file';
import { TRAINING_JOB_SCHEMA_ID, trainingJobJsonSchema } from '../../jobspec/json-schema';

const SCHEMA_FILE = join(__dirname, '..', '..', 'jobspec', 'training-job-v1.schema.json');

describe('training-job-v1 JSON Schema', () => {
  it('is committed as jobspec/training-job-v1.schema.json, exactly as generated', () => {
    expectCommittedAsGenerated(SCHEMA_FILE, trainingJobJsonSchema(), 'jobspec/schema.ts', __filename);
  });

  it('describes what a submitter writes', () => {
    const schema = trainingJobJsonSchema();
    expect(schema.$id).toBe(TRAINING_JOB_SCHEMA_ID);
    expect(schema.$schema).toBe('https://json-schema.org/draft/2020-12/schema');
    expect(schema.title).toMatch(/training-job-v1/);
    expect(schema.additionalProperties).toBe(false);
    const required = schema.required as string[];
    expect(required).toEqual(
      expect.arrayContaining(['job_id', 'owner_did', 'created_at', 'job_type', 'backend', 'signature_ed25519']),
    );
    // Defaulted and optional fields must not be demanded from submitters.
    expect(required).not.toContain('trainer');
    expect(required).not.toContain('notifications');
    expect(required).not.toContain('$schema');
    const properties = schema.properties as Record<string, { required?: string[]; properties?: object }>;
    expect(properties.backend?.required).toEqual(['provider', 'max_cost_usd']);
    expect(properties.artifacts?.required).toEqual(['output_repo', 'output_branch']);
  });
});
