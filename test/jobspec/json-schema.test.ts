import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TRAINING_JOB_SCHEMA_ID, trainingJobJsonSchema } from '../../jobspec/json-schema';

const SCHEMA_FILE = join(__dirname, '..', '..', 'jobspec', 'training-job-v1.schema.json');

describe('training-job-v1 JSON Schema', () => {
  const generated = `${JSON.stringify(trainingJobJsonSchema(), null, 2)}\n`;

  it('is committed as jobspec/training-job-v1.schema.json, exactly as generated', () => {
    // The file is written here and only here, so jobspec/ itself stays free of I/O.
    if (process.env.UPDATE_SCHEMA === '1') writeFileSync(SCHEMA_FILE, generated);
    const committed = readFileSync(SCHEMA_FILE, 'utf8');
    if (committed !== generated) {
      throw new Error(
        'jobspec/training-job-v1.schema.json is out of date with jobspec/schema.ts; regenerate it with\n' +
          '  UPDATE_SCHEMA=1 npx jest test/jobspec/json-schema\nand commit the result.',
      );
    }
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
