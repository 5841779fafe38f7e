/**
 * Request and response shapes of the HTTP API, as zod schemas: they validate requests, serialize responses and are
 * what /openapi.json describes.
 */
import { z } from 'zod';
import { JOB_STATES } from '../../workflows/lifecycle/states';

/** Job ids are lower-case UUIDs (jobspec/schema.ts); anything else cannot name a job. */
export const JOB_ID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
export const jobIdSchema = z.string().regex(JOB_ID_PATTERN, 'must be a job id (a lower-case UUID)');
export const jobParamsSchema = z.strictObject({ id: jobIdSchema });

export const fieldErrorSchema = z.object({
  in: z.enum(['body', 'query', 'path', 'header']),
  path: z.string(),
  pointer: z.string(),
  detail: z.string(),
});

export const problemSchema = z
  .looseObject({
    type: z.url(),
    title: z.string(),
    status: z.int(),
    detail: z.string(),
    instance: z.string().optional(),
    request_id: z.string().optional(),
    errors: z.array(fieldErrorSchema).optional(),
  })
  .meta({ id: 'Problem', description: 'RFC 9457 problem details (application/problem+json)' });

export const submitResponseSchema = z
  .object({
    job_id: z.string(),
    workflow_id: z.string(),
    status_url: z.string(),
    web_ui_url: z.string().nullable(),
  })
  .meta({ id: 'SubmitResponse' });

const jobStateSchema = z.enum(JOB_STATES);

const errorRecordSchema = z.object({
  class: z.string(),
  detail: z.string(),
  attempt: z.int(),
  backend: z.string().nullable(),
  at: z.string(),
});

/** The `status` query's answer; loose at the top so fields added by later issues (artifacts, evals) pass through. */
export const jobStatusSchema = z
  .looseObject({
    job_id: z.string(),
    job_type: z.string().nullable(),
    owner_did: z.string().nullable(),
    state: jobStateSchema,
    attempt: z.int(),
    backend: z.string().nullable(),
    transitions: z.array(
      z.object({ state: jobStateSchema, at: z.string(), reason: z.string(), attempt: z.int(), backend: z.string().nullable() }),
    ),
    cost_usd: z.number(),
    deployments: z.array(
      z.object({
        attempt: z.int(),
        backend: z.string(),
        id: z.string(),
        state: z.string(),
        cost_usd: z.number(),
        exit_code: z.int().nullable(),
        submitted_at: z.string(),
        closed: z.boolean(),
        progress: z.object({ step: z.number(), maxSteps: z.number().optional(), loss: z.number().optional() }).nullable(),
        ref: z.object({
          backend: z.string(),
          kind: z.string(),
          id: z.string(),
          jobId: z.string(),
          attempt: z.int(),
          submittedAt: z.string(),
          data: z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])),
        }),
      }),
    ),
    last_error: errorRecordSchema.nullable(),
    errors: z.array(errorRecordSchema),
    // Result integration (absent from jobs that ran before it).
    artifacts: z
      .object({
        repo: z.string(),
        branch: z.string(),
        commit: z.string(),
        path: z.string(),
        manifest_sha256: z.string(),
        signer_did: z.string(),
        files: z.array(z.object({ path: z.string(), sha256: z.string(), size: z.int() })),
        lfs: z.array(z.string()),
        provenance: z.object({ path: z.string(), sha256: z.string() }).optional().meta({ description: 'the signed SLSA provenance (DSSE) next to the manifest' }),
      })
      .nullable()
      .optional()
      .meta({ description: 'where the artifacts were committed (null until they are)' }),
    evals: z
      .array(
        z.object({
          task_type: z.string(),
          tasks: z.int(),
          successes: z.int(),
          success_rate: z.number(),
          suite_sha256: z.string().nullable(),
          mean_latency_ms: z.number(),
          promoted: z.boolean().nullable(),
          promotion: z.string().nullable(),
          elite_success_rate: z.number().nullable(),
          registry_commit: z.string().nullable(),
        }),
      )
      .optional()
      .meta({ description: 'eval results per task type, and what the elite registry made of them' }),
    notifications: z
      .array(z.object({ event: z.string(), target: z.string(), delivered: z.boolean(), detail: z.string(), at: z.string() }))
      .optional(),
  })
  .meta({ id: 'JobStatus', description: 'the trainingJob workflow\'s `status` query' });

export const jobSummarySchema = z.object({
  job_id: z.string(),
  workflow_id: z.string(),
  run_id: z.string(),
  state: z.string().nullable(),
  job_type: z.string().nullable(),
  owner_did: z.string().nullable(),
  backend: z.string().nullable(),
  base_model: z.string().nullable(),
  attempt: z.number().nullable(),
  cost_usd: z.number().nullable(),
  workflow_status: z.string(),
  start_time: z.string().nullable(),
  close_time: z.string().nullable(),
  status_url: z.string(),
});

export const jobPageSchema = z
  .object({ jobs: z.array(jobSummarySchema), next_page_token: z.string().nullable() })
  .meta({ id: 'JobPage' });

export const logsQuerySchema = z.strictObject({
  follow: z.stringbool().default(false).meta({ description: 'keep streaming until the job is terminal' }),
  tail: z.coerce.number().int().min(0).max(10_000).optional().meta({ description: 'only the last N lines before following' }),
});

export const cancelBodySchema = z
  .strictObject({
    action: z.literal('cancel'),
    job_id: jobIdSchema,
    issued_at: z.int().min(0).meta({ description: 'Unix seconds; at most 300 s from the server clock' }),
    signature_ed25519: z.string().regex(/^[A-Za-z0-9_-]+$/, 'must be a base64url string').max(256),
  })
  .meta({ id: 'CancelRequest', description: "the owner's Ed25519 signature over {action, job_id, issued_at} (RFC 8785 JSON)" });

export const cancelResponseSchema = z.object({
  job_id: z.string(),
  update_id: z.string(),
  status_url: z.string(),
});

export const artifactNameParamsSchema = z.strictObject({
  id: jobIdSchema,
  name: z.string().min(1).max(1024),
});

export const artifactListSchema = z
  .object({
    job_id: z.string(),
    manifest: z.record(z.string(), z.unknown()).nullable().meta({ description: 'the signed manifest; null until the job has artifacts' }),
    artifacts: z.array(z.object({ name: z.string(), size: z.int(), sha256: z.string(), url: z.string() })),
  })
  .meta({ id: 'ArtifactList' });

export const backendListSchema = z.object({
  backends: z.array(
    z.object({
      name: z.string(),
      kind: z.string(),
      enabled: z.boolean(),
      hourly_usd: z.number(),
      capabilities: z.object({
        job_types: z.array(z.string()),
        trainer_images: z.array(z.string()),
        max_concurrent: z.int().nullable(),
      }),
    }),
  ),
});

export const identitySchema = z
  .object({
    did: z.string().meta({ description: "the orchestrator's Ed25519 did:key: artifact manifests, provenance statements and the elite registry are signed by it" }),
    model_signing_public_key_pem: z
      .string()
      .optional()
      .meta({ description: 'the P-256 public key (PEM) that checks model.sig with `model_signing verify key` (OpenSSF Model Signing)' }),
  })
  .meta({ id: 'Identity' });

export const backendParamsSchema = z.strictObject({ name: z.string().min(1).max(63) });

export const backendHealthSchema = z.object({
  name: z.string(),
  kind: z.string(),
  ok: z.boolean(),
  detail: z.string(),
  latency_ms: z.number(),
});

export const healthzSchema = z.object({
  ok: z.boolean(),
  temporal: z.object({ ok: z.boolean(), namespace: z.string(), detail: z.string() }),
  task_queue: z.string(),
});

// ---- P2PFL's web logger: what its client (p2pfl 0.4.4, management/p2pfl_web_services.py) POSTs ----------------------

/** P2PFL writes local times as "%Y-%m-%d %H:%M:%S", without a zone. */
const p2pflTime = z.string().regex(/^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$/, 'must be "YYYY-MM-DD HH:MM:SS"');
const p2pflNodeId = z.int().min(1).max(2 ** 31 - 1);
const p2pflName = z.string().min(1).max(256);
const p2pflRound = z.int().min(0).max(1_000_000_000);
// Unknown keys are dropped, not refused: a later P2PFL may send more than 0.4.4 does.
export const p2pflNodeBodySchema = z.object({ address: p2pflName, creation_date: p2pflTime }).meta({ id: 'P2pflNode' });
export const p2pflLogBodySchema = z
  .object({
    time: p2pflTime,
    node_id: p2pflNodeId,
    // Typed int in P2PFL's client, but its log handler sends the level's name ("INFO").
    level: z.union([z.string().min(1).max(32), z.int()]),
    message: z.string().max(64 * 1024),
  })
  .meta({ id: 'P2pflNodeLog' });
export const p2pflLocalMetricBodySchema = z
  .object({ node_id: p2pflNodeId, exp_id: p2pflName, metric_name: p2pflName, round: p2pflRound, step: z.int().min(0), value: z.number() })
  .meta({ id: 'P2pflLocalMetric', description: 'a metric of local training (with its step)' });
export const p2pflGlobalMetricBodySchema = z
  .object({ node_id: p2pflNodeId, exp_id: p2pflName, metric_name: p2pflName, round: p2pflRound, value: z.number() })
  .meta({ id: 'P2pflGlobalMetric', description: 'a metric of a round (evaluation)' });
export const p2pflSystemMetricBodySchema = z
  .object({ node_id: p2pflNodeId, metric_name: p2pflName, time: p2pflTime, value: z.number() })
  .meta({ id: 'P2pflSystemMetric', description: 'a resource metric (cpu, ram)' });

export const p2pflNodeResponseSchema = z.object({ node_id: p2pflNodeId });
export const p2pflRecordedSchema = z.object({ recorded: z.literal(true) });
export const p2pflQuerySchema = z.strictObject({ attempt: z.coerce.number().int().min(1).optional().meta({ description: 'only this attempt' }) });

/** What the API keeps per request: the body, the attempt its key was issued for, the node's address, when. */
const stamp = { attempt: z.int(), received_at: z.string() };
const fromNode = { ...stamp, node: z.string() };
const p2pflNodeRecord = z.object({ ...stamp, node_id: p2pflNodeId, ...p2pflNodeBodySchema.shape });
const p2pflLogRecord = z.object({ ...fromNode, ...p2pflLogBodySchema.shape });
const p2pflLocalRecord = z.object({ ...fromNode, ...p2pflLocalMetricBodySchema.shape });
const p2pflGlobalRecord = z.object({ ...fromNode, ...p2pflGlobalMetricBodySchema.shape });
const p2pflSystemRecord = z.object({ ...fromNode, ...p2pflSystemMetricBodySchema.shape });

/** One line of a job's record file (client/api/p2pfl-web.ts). */
export const p2pflRecordSchema = z.discriminatedUnion('kind', [
  p2pflNodeRecord.extend({ kind: z.literal('node') }),
  p2pflLogRecord.extend({ kind: z.literal('log') }),
  p2pflLocalRecord.extend({ kind: z.literal('local') }),
  p2pflGlobalRecord.extend({ kind: z.literal('global') }),
  p2pflSystemRecord.extend({ kind: z.literal('system') }),
]);
export type P2pflRecord = z.infer<typeof p2pflRecordSchema>;

export const p2pflRecordsSchema = z
  .object({
    job_id: z.string(),
    nodes: z.array(p2pflNodeRecord),
    logs: z.array(p2pflLogRecord),
    metrics: z.object({ local: z.array(p2pflLocalRecord), global: z.array(p2pflGlobalRecord), system: z.array(p2pflSystemRecord) }),
  })
  .meta({ id: 'P2pflRecords', description: "what a job's P2PFL nodes sent through P2PFL's web logger, oldest first" });
export type P2pflRecords = z.infer<typeof p2pflRecordsSchema>;
