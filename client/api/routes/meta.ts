/** Backends, health, metrics, the generated JSON Schema and the OpenAPI document. */
import { trainingJobJsonSchema } from '../../../jobspec/json-schema';
import { JOB_TYPES } from '../../../jobspec/schema';
import type { ApiContext, ZodApp } from '../context';
import { fieldError, ProblemError } from '../problem';
import { backendHealthSchema, backendListSchema, backendParamsSchema, healthzSchema, identitySchema } from '../schemas';

class HealthTimeout extends Error {}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new HealthTimeout(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export function metaRoutes(app: ZodApp, ctx: ApiContext): void {
  const schemaJson = JSON.stringify(trainingJobJsonSchema(), null, 2);

  app.get(
    '/backends',
    { schema: { summary: 'Configured compute backends', tags: ['backends'], response: { 200: backendListSchema } } },
    async () => ({
      backends: Object.entries(ctx.config.backends).map(([name, b]) => ({
        name,
        kind: b.kind,
        enabled: b.enabled,
        hourly_usd: b.hourly_usd,
        capabilities: {
          job_types: [...JOB_TYPES],
          trainer_images: Object.keys(b.trainers),
          max_concurrent: b.max_concurrent ?? null,
        },
      })),
    }),
  );

  app.get(
    '/backends/:name/health',
    {
      schema: {
        summary: "A backend's health check (the adapter's health(), bounded by a timeout): 200 healthy, 503 not",
        tags: ['backends'],
        params: backendParamsSchema,
        response: { 200: backendHealthSchema, 503: backendHealthSchema },
      },
    },
    async (req, reply) => {
      const backend = ctx.backends.get(req.params.name);
      if (!backend) {
        throw new ProblemError('not-found', `no backend named ${JSON.stringify(req.params.name)}`, [
          fieldError('path', 'name', `configured: ${[...ctx.backends.keys()].join(', ')}`),
        ]);
      }
      const started = performance.now();
      let report: { ok: boolean; detail: string };
      try {
        report = await withTimeout(backend.health(), ctx.healthTimeoutMs);
      } catch (err) {
        if (!(err instanceof HealthTimeout)) report = { ok: false, detail: `health check failed: ${(err as Error).message}` };
        else {
          // Say why nothing answered where the reader can tell (no worker polls its queue, or the one that does hangs).
          const why = backend.whySilent ? await backend.whySilent().catch(() => undefined) : undefined;
          report = { ok: false, detail: `health check timed out: ${err.message}${why ? ` — ${why}` : ''}` };
        }
      }
      const body = {
        name: backend.name,
        kind: backend.kind,
        ok: report.ok,
        detail: report.detail,
        latency_ms: Math.round(performance.now() - started),
      };
      return reply.code(report.ok ? 200 : 503).send(body);
    },
  );

  app.get(
    '/identity',
    { config: { auth: 'public' }, schema: { summary: "The orchestrator's did:key (signer of artifact manifests and of the elite registry)", tags: ['meta'], response: { 200: identitySchema } } },
    async () => {
      if (!ctx.identity) throw new ProblemError('not-found', 'this API serves no orchestrator identity');
      return { did: ctx.identity(), ...(ctx.modelSigningKey ? { model_signing_public_key_pem: ctx.modelSigningKey() } : {}) };
    },
  );

  app.get(
    '/healthz',
    { config: { auth: 'public' }, schema: { summary: 'Liveness: the API answers and Temporal is reachable (503 when not)', tags: ['meta'], response: { 200: healthzSchema, 503: healthzSchema } } },
    async (_req, reply) => {
      const temporal = await ctx.jobs.temporalHealthy(ctx.healthTimeoutMs);
      return reply
        .code(temporal.ok ? 200 : 503)
        .send({ ok: temporal.ok, temporal: { ...temporal, namespace: ctx.namespace }, task_queue: ctx.jobs.taskQueue });
    },
  );

  app.get('/metrics', { config: { auth: 'operator' }, schema: { summary: 'Prometheus metrics', tags: ['meta'] } }, async (_req, reply) =>
    reply.type(ctx.metrics.registry.contentType).send(await ctx.metrics.registry.metrics()),
  );

  app.get('/schemas/training-job-v1.json', { config: { auth: 'public' }, schema: { summary: 'JSON Schema of training-job-v1 (generated from the zod schema)', tags: ['meta'] } }, async (_req, reply) =>
    reply.type('application/schema+json').send(schemaJson),
  );

  app.get('/openapi.json', { config: { auth: 'public' }, schema: { summary: 'This document', tags: ['meta'] } }, async (_req, reply) =>
    reply.type('application/json').send(JSON.stringify(app.swagger())),
  );
}
