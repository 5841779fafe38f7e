/**
 * P2PFL's web-logger endpoints, per job (issue 7). The p2pfl backend points each experiment's P2PFL web logger at
 * <API>/jobs/<id>/p2pfl with a key for that job and attempt (P2PFL_WEB_LOGGER_URL / P2PFL_WEB_LOGGER_KEY), and P2PFL's
 * own client (p2pfl 0.4.4, management/p2pfl_web_services.py) calls, with `x-api-key: <key>`:
 *
 *   POST …/node                {address, creation_date}                          → {node_id}
 *   POST …/node-log            {time, node_id, level, message}
 *   POST …/node-metric/local   {node_id, exp_id, metric_name, round, step, value}
 *   POST …/node-metric/global  {node_id, exp_id, metric_name, round, value}
 *   POST …/node-metric/system  {node_id, metric_name, time, value}
 *
 * GET /jobs/:id/p2pfl returns what arrived (under the API's own bearer token, like every other read).
 */
import type { FastifyRequest } from 'fastify';
import type { z } from 'zod';
import { verifyP2pflWebKey } from '../../../common/p2pfl-web-key';
import type { ApiContext, ZodApp } from '../context';
import { RecordsFullError, UnknownNodeError, type NodeEntry } from '../p2pfl-web';
import { fieldError, ProblemError } from '../problem';
import {
  jobParamsSchema,
  p2pflGlobalMetricBodySchema,
  p2pflLocalMetricBodySchema,
  p2pflLogBodySchema,
  p2pflNodeBodySchema,
  p2pflNodeResponseSchema,
  p2pflQuerySchema,
  p2pflRecordedSchema,
  p2pflRecordsSchema,
  p2pflSystemMetricBodySchema,
} from '../schemas';

const KEY_HEADER = 'x-api-key';
const TAG = 'p2pfl';

export function p2pflRoutes(app: ZodApp, ctx: ApiContext): void {
  const records = ctx.p2pflWeb;
  /** The attempt each request's key was issued for, set by the key check before anything else runs. */
  const attempts = new WeakMap<FastifyRequest, number>();

  // Before validation: nobody without this job's key learns anything, not even which fields are wrong.
  const checkKey = async (req: FastifyRequest): Promise<void> => {
    const given = req.headers[KEY_HEADER];
    if (typeof given !== 'string' || given === '') {
      throw new ProblemError('unauthorized', `P2PFL's web logger must send "${KEY_HEADER}: <P2PFL_WEB_LOGGER_KEY>"`, [fieldError('header', KEY_HEADER, 'missing')]);
    }
    const { id } = req.params as { id?: string };
    const attempt = id === undefined ? undefined : verifyP2pflWebKey(records.home, id, given);
    if (attempt === undefined) throw new ProblemError('key-refused', 'this key is not one issued for this job', [fieldError('header', KEY_HEADER, 'not a key of this job')]);
    attempts.set(req, attempt);
  };

  const attemptOf = (req: FastifyRequest): number => {
    const attempt = attempts.get(req);
    if (attempt === undefined) throw new Error('a P2PFL web-logger route ran without its key check');
    return attempt;
  };

  const storeErrors = (err: unknown): never => {
    if (err instanceof UnknownNodeError) throw new ProblemError('invalid-request', err.message, [fieldError('body', 'node_id', 'not registered for this attempt')]);
    if (err instanceof RecordsFullError) throw new ProblemError('records-full', err.message);
    throw err;
  };

  // P2PFL sends x-api-key, never the API's bearer token: app.ts lets these through to checkKey instead.
  const keyed = { config: { auth: 'p2pfl-web-key' as const }, onRequest: checkKey };
  const description = `P2PFL's web logger of the job's experiment; header ${KEY_HEADER}: the key the p2pfl backend gave the attempt (401 missing, 403 not this job's)`;

  app.post(
    '/jobs/:id/p2pfl/node',
    {
      ...keyed,
      schema: {
        summary: 'P2PFL web logger: register a node (200 when it was registered before)',
        description,
        tags: [TAG],
        params: jobParamsSchema,
        body: p2pflNodeBodySchema,
        response: { 200: p2pflNodeResponseSchema, 201: p2pflNodeResponseSchema },
      },
    },
    async (req, reply) => {
      const { nodeId, created } = await records.register(req.params.id, attemptOf(req), req.body).catch(storeErrors);
      return reply.code(created ? 201 : 200).send({ node_id: nodeId });
    },
  );

  const entryRoute = <S extends z.ZodType>(url: string, summary: string, body: S, entry: (b: z.output<S>) => NodeEntry): void => {
    app.post(
      `/jobs/:id/p2pfl/${url}`,
      { ...keyed, schema: { summary: `P2PFL web logger: ${summary}`, description, tags: [TAG], params: jobParamsSchema, body, response: { 201: p2pflRecordedSchema } } },
      async (req, reply) => {
        await records.record(req.params.id, attemptOf(req), entry(req.body as z.output<S>)).catch(storeErrors);
        return reply.code(201).send({ recorded: true as const });
      },
    );
  };
  entryRoute('node-log', "a node's log line", p2pflLogBodySchema, (b) => ({ kind: 'log', ...b }));
  entryRoute('node-metric/local', 'a local-training metric (with its step)', p2pflLocalMetricBodySchema, (b) => ({ kind: 'local', ...b }));
  entryRoute('node-metric/global', "a round's metric (evaluation)", p2pflGlobalMetricBodySchema, (b) => ({ kind: 'global', ...b }));
  entryRoute('node-metric/system', 'a resource metric', p2pflSystemMetricBodySchema, (b) => ({ kind: 'system', ...b }));

  app.get(
    '/jobs/:id/p2pfl',
    {
      schema: {
        summary: "What the job's P2PFL nodes sent through P2PFL's web logger: nodes, logs, local/global/system metrics",
        description: '404 when no node of the job has sent anything (not a p2pfl job, or its experiment has no web logger).',
        tags: [TAG],
        params: jobParamsSchema,
        querystring: p2pflQuerySchema,
        response: { 200: p2pflRecordsSchema },
      },
    },
    async (req) => {
      const found = await records.read(req.params.id, req.query.attempt);
      if (!found) throw new ProblemError('not-found', `no P2PFL web-logger records for job ${req.params.id}`);
      return found;
    },
  );
}
