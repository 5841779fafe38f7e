/**
 * The orchestrator's HTTP API (docs/architecture.md §10) as a Fastify instance: zod validates every request part and
 * serializes every JSON response, @fastify/swagger derives /openapi.json from the same schemas, every error is an
 * RFC 9457 problem; client/api/auth.ts says who may call (owners' signed requests, the operator's token) and
 * client/api/host-check.ts which Host and Origin are served.
 */
import { randomUUID } from 'node:crypto';
import fastifySwagger from '@fastify/swagger';
import Fastify, { LogController, type FastifyError, type FastifyServerOptions } from 'fastify';
import type { Client, Connection } from '@temporalio/client';
import { jsonSchemaTransform, jsonSchemaTransformObject, serializerCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import type { FastifySchemaCompiler } from 'fastify';
import type { z } from 'zod';
import type { ForgeConfig } from '../../common/config';
import { forgeHome } from '../../common/paths';
import { entityBackendReaders, type ApiBackendReader } from './backend-readers';
import { trainingJobJsonSchema } from '../../jobspec/json-schema';
import { noArtifacts, type ArtifactSource } from './artifacts';
import { HOW_TO_SIGN, keepRawJsonBodies, registerAuth, registerOwnerScope, type ApiAuthMode } from './auth';
import { allowedHostSet, registerHostCheck } from './host-check';
import type { ApiContext, ZodApp } from './context';
import { JobsService } from './jobs';
import { JobMetrics } from './job-metrics';
import { createMetrics } from './metrics';
import { P2pflWebRecords } from './p2pfl-web';
import { fieldError, fromZodIssues, PROBLEM_CONTENT_TYPE, ProblemError, summarize, zodErrorMap, type FieldLocation } from './problem';
import { artifactRoutes } from './routes/artifacts';
import { curveRoutes } from './routes/curves';
import { jobRoutes } from './routes/jobs';
import { metaRoutes } from './routes/meta';
import { p2pflRoutes } from './routes/p2pfl';

export const BODY_LIMIT_BYTES = 256 * 1024;
const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

export interface ApiDeps {
  client: Client;
  connection: Connection;
  namespace: string;
  taskQueue: string;
  config: ForgeConfig;
  /**
   * How the API reads backends; default: through their read entities, answered by orchestrator workers (the API holds
   * no backend credentials). Tests may pass in-process readers.
   */
  backends?: ReadonlyMap<string, ApiBackendReader>;
  artifacts?: ArtifactSource;
  /** The orchestrator's did:key, served at GET /identity (clients check artifact manifests against it). */
  identity?: () => string;
  /** The orchestrator's model signing public key (PEM), served at GET /identity as model_signing_public_key_pem. */
  modelSigningKey?: () => string;
  /** The operator's token: with auth 'token' every request needs `Authorization: Bearer <token>`; with 'owners' it sees every job. */
  token?: string;
  /** 'owners': signed requests, each owner sees their own jobs (client/api/auth.ts); 'token' (default): as above. */
  auth?: ApiAuthMode;
  /** The address the API listens on (its name is an allowed Host, unless a wildcard address). */
  listenHost?: string;
  /** Host names served besides loopback and listenHost (FORGE_API_ALLOWED_HOSTS). */
  allowedHosts?: readonly string[];
  webUiUrl?: string | null;
  queryTimeoutMs?: number;
  healthTimeoutMs?: number;
  logPollMs?: number;
  /** How often /metrics re-reads job counts, attempts and cost from Temporal visibility (ms). */
  jobMetricsRefreshMs?: number;
  /** Where P2PFL web-logger records are kept, and the key secret read (default: under FORGE_HOME). */
  p2pflWeb?: P2pflWebRecords;
  /** Fastify logger options (pino); false for none. */
  logger?: FastifyServerOptions['logger'];
  /** FORGE_HOME: the default root of the spec policy's paths (common/spec-policy.ts); default forgeHome(). */
  home?: string;
}

/** P2PFL nodes post to the web-logger URL the operator configured: its host is one this API answers to. */
function webLoggerHosts(config: ForgeConfig): string[] {
  return Object.values(config.backends).flatMap((b) => ('web_logger_url' in b && typeof b.web_logger_url === 'string' ? [new URL(b.web_logger_url).hostname] : []));
}

const PART_LOCATION: Record<string, FieldLocation> = { body: 'body', querystring: 'query', params: 'path', headers: 'header' };

/** Request validation by zod, failing with a problem that names every bad field. */
const validatorCompiler: FastifySchemaCompiler<z.ZodType> = ({ schema, httpPart }) => (data) => {
  const result = schema.safeParse(data, { error: zodErrorMap });
  if (result.success) return { value: result.data };
  const errors = fromZodIssues(PART_LOCATION[httpPart ?? 'body'] ?? 'body', result.error.issues);
  return { error: new ProblemError('invalid-request', summarize(errors), errors) };
};

/** Fastify's own request errors (body parsing, limits, media types) as problems. */
function toProblem(err: FastifyError | Error): ProblemError | undefined {
  if (err instanceof ProblemError) return err;
  const code = 'code' in err ? err.code : undefined;
  const status = 'statusCode' in err ? err.statusCode : undefined;
  switch (code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new ProblemError('payload-too-large', `request body is over ${BODY_LIMIT_BYTES} bytes (256 KiB)`, [fieldError('body', '(root)', 'too large')]);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new ProblemError('unsupported-media-type', 'send the body as application/json', [fieldError('header', 'content-type', 'must be application/json')]);
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new ProblemError('invalid-request', 'the JSON body is empty', [fieldError('body', '(root)', 'required (object)')]);
  }
  // Unparseable JSON and prototype-poisoning keys both come from the JSON parser as 400s.
  if (status === 400) return new ProblemError('invalid-request', `body is not acceptable JSON: ${err.message}`, [fieldError('body', '(root)', err.message)]);
  if (status === 404) return new ProblemError('not-found', err.message);
  if (status === 405) return new ProblemError('method-not-allowed', err.message);
  if (status === 413) return new ProblemError('payload-too-large', err.message, [fieldError('body', '(root)', 'too large')]);
  if (status === 415) return new ProblemError('unsupported-media-type', err.message);
  return undefined;
}

export async function buildApp(deps: ApiDeps): Promise<ZodApp> {
  const app = Fastify({
    logger: deps.logger ?? { level: 'info' },
    bodyLimit: BODY_LIMIT_BYTES,
    onProtoPoisoning: 'error',
    onConstructorPoisoning: 'error',
    requestIdHeader: false,
    logController: new LogController({ requestIdLogLabel: 'request_id' }),
    // A caller's X-Request-Id is kept when it is a plain token (it ends up in logs), else we make one.
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID_PATTERN.test(given) ? given : randomUUID();
    },
    return503OnClosing: true,
    // Open SSE streams must not hold shutdown.
    forceCloseConnections: true,
  }).withTypeProvider<ZodTypeProvider>();

  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  // JSON only: a spec sent as text/plain is a 415, not a string that fails validation.
  app.removeContentTypeParser('text/plain');
  keepRawJsonBodies(app);

  const metrics = createMetrics();
  // Jobs by state, attempts and cost, from Temporal visibility when /metrics is scraped (client/api/job-metrics.ts).
  new JobMetrics({ client: deps.client, registry: metrics.registry, refreshMs: deps.jobMetricsRefreshMs ?? 30_000 });
  const queryTimeoutMs = deps.queryTimeoutMs ?? 10_000;
  const healthTimeoutMs = deps.healthTimeoutMs ?? 5_000;
  const jobs = new JobsService({
    client: deps.client,
    connection: deps.connection,
    namespace: deps.namespace,
    taskQueue: deps.taskQueue,
    queryTimeoutMs,
  });
  const ctx: ApiContext = {
    jobs,
    config: deps.config,
    backends: deps.backends ?? entityBackendReaders(deps.config, { ...deps, timeoutMs: queryTimeoutMs, healthTimeoutMs }),
    artifacts: deps.artifacts ?? noArtifacts,
    identity: deps.identity ?? null,
    modelSigningKey: deps.modelSigningKey ?? null,
    metrics,
    namespace: deps.namespace,
    webUiUrl: deps.webUiUrl ?? null,
    healthTimeoutMs,
    logPollMs: deps.logPollMs ?? 1_000,
    p2pflWeb: deps.p2pflWeb ?? new P2pflWebRecords(forgeHome()),
    home: deps.home ?? forgeHome(),
  };

  app.addHook('onRequest', async (req, reply) => {
    reply.header('x-request-id', req.id);
  });
  // Host and origin first (DNS rebinding, browsers), then who is calling, then (job routes) whose job it is.
  registerHostCheck(app, allowedHostSet(deps.listenHost, [...(deps.allowedHosts ?? []), ...webLoggerHosts(deps.config)]));
  registerAuth(app, { mode: deps.auth ?? 'token', ...(deps.token ? { token: deps.token } : {}) });
  registerOwnerScope(app, (id) => jobs.ownerOf(id));

  app.addHook('onResponse', async (req, reply) => {
    const labels = { method: req.method, route: req.routeOptions.url ?? '(unmatched)', status: String(reply.statusCode) };
    metrics.requests.inc(labels);
    metrics.duration.observe(labels, reply.elapsedTime / 1000);
    if (req.method === 'POST' && labels.route === '/jobs') metrics.submitLatency.observe({ status: labels.status }, reply.elapsedTime / 1000);
    if (req.method === 'GET' && labels.route === '/jobs/:id') metrics.pollLatency.observe({ status: labels.status }, reply.elapsedTime / 1000);
  });

  app.setErrorHandler((err: FastifyError | Error, req, reply) => {
    const problem = toProblem(err);
    if (problem) {
      if (problem.status >= 500) req.log.error({ err }, problem.message);
      return reply.code(problem.status).headers(problem.headers).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify(problem.toBody(req.url.split('?')[0] ?? req.url, req.id)));
    }
    req.log.error({ err }, 'unhandled error');
    const internal = new ProblemError('internal', `internal error; the server log has the details under request id ${req.id}`);
    return reply.code(500).type(PROBLEM_CONTENT_TYPE).send(JSON.stringify(internal.toBody(req.url.split('?')[0] ?? req.url, req.id)));
  });

  app.setNotFoundHandler((req) => {
    throw new ProblemError('not-found', `no route ${req.method} ${req.url.split('?')[0]}`);
  });

  // The spec body is validated by jobspec/parse in the handler (to keep the raw, signed bytes); document it here.
  const { $schema: _draft, $id: _id, ...specBodySchema } = trainingJobJsonSchema();
  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Chrysalis Forge Orchestrator API',
        version: '1.0.0',
        description: 'Submit signed training jobs, follow them, cancel them. Errors are application/problem+json (RFC 9457).',
      },
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', description: "FORGE_API_TOKEN, the operator's token: sees every job" },
          ownerSignature: {
            type: 'apiKey',
            in: 'header',
            name: 'Signature',
            description: `Under FORGE_API_AUTH=owners: an owner's RFC 9421 HTTP Message Signature. ${HOW_TO_SIGN}`,
          },
        },
      },
      security: [{ bearerAuth: [] }, { ownerSignature: [] }, {}],
    },
    transform: (doc) => {
      const out = jsonSchemaTransform(doc);
      if (doc.url === '/jobs' && doc.route.method === 'POST') {
        return { ...out, schema: { ...out.schema, body: specBodySchema } };
      }
      return out;
    },
    transformObject: jsonSchemaTransformObject,
  });

  jobRoutes(app, ctx);
  artifactRoutes(app, ctx);
  metaRoutes(app, ctx);
  p2pflRoutes(app, ctx);
  curveRoutes(app, ctx);
  return app;
}
