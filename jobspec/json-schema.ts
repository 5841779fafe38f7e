/**
 * The JSON Schema of training-job-v1, generated from the zod schema so the two cannot disagree.
 * `jobspec/training-job-v1.schema.json` holds a copy; test/jobspec/json-schema.test.ts keeps it current.
 */
import { z } from 'zod';
import { trainingJobSpecSchema } from './schema';

export const TRAINING_JOB_SCHEMA_ID = 'https://chrysalis-forge.dev/schemas/training-job-v1.json';

export function trainingJobJsonSchema(): Record<string, unknown> {
  // io 'input': the schema describes what a submitter writes, so defaulted fields are optional.
  const generated = z.toJSONSchema(trainingJobSpecSchema, { io: 'input' }) as Record<string, unknown>;
  const { $schema, ...rest } = generated;
  return {
    $schema,
    $id: TRAINING_JOB_SCHEMA_ID,
    title: 'Chrysalis Forge training job (training-job-v1)',
    description:
      'A signed training job. signature_ed25519 is Ed25519 over the RFC 8785 canonical JSON of the spec ' +
      'without that field, base64url without padding, by the key of owner_did. No string in it may contain a ' +
      'control character (U+0000–U+001F, U+007F–U+009F) or a bidi override or isolate (U+202A–U+202E, U+2066–U+2069).',
    ...rest,
  };
}
