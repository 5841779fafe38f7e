/** /jobs: submit (idempotent on job_id), status, list, cancel, logs. */
import { z } from 'zod';
import { acceptSpec, specIssuesOf, type SpecError } from '../../../common/accept-spec';
import type { TrainingJobSpec } from '../../../jobspec/schema';
import { ownerScope } from '../auth';
import { selfUrl, type ApiContext, type ZodApp } from '../context';
import { streamJobLogs } from '../logs';
import { fieldError, fromSpecIssues, ProblemError, summarize, type FieldError } from '../problem';
import {
  cancelBodySchema,
  cancelResponseSchema,
  jobPageSchema,
  jobParamsSchema,
  jobStatusSchema,
  logsQuerySchema,
  submitResponseSchema,
} from '../schemas';
import { listQuerySchema } from '../visibility';
import { inSpan } from '../../../common/tracing';

/** The SSE body has no JSON schema; a string stands for it in the OpenAPI document. */
const sseDocSchema = z.string().meta({ description: 'server-sent events' });

/** "field: message" (how jobspec/signing words its reasons) → a field error. */
function reasonToField(reason: string): FieldError {
  const i = reason.indexOf(': ');
  return i > 0 ? fieldError('body', reason.slice(0, i), reason.slice(i + 2)) : fieldError('body', '(root)', reason);
}

/**
 * acceptSpec's refusal of a parsed spec as the API's problem, the first that applies: bad signature (401), owner not
 * allowed (403), unknown backend (400), the operator's policy (403).
 */
function refusal(errors: readonly SpecError[], spec: TrainingJobSpec, metrics: ApiContext['metrics']): ProblemError {
  const signature = errors.find((e) => e.kind === 'signature');
  if (signature) {
    metrics.submissions.inc({ outcome: 'bad_signature' });
    return new ProblemError('bad-signature', signature.reason, [reasonToField(signature.reason)]);
  }
  if (errors.some((e) => e.kind === 'owner-not-allowed')) {
    metrics.submissions.inc({ outcome: 'owner_not_allowed' });
    return new ProblemError('owner-not-allowed', `${spec.owner_did} is not in this orchestrator's allowed_owners`, [
      fieldError('body', 'owner_did', 'not in the operator’s allowed_owners'),
    ]);
  }
  // The worker would abandon the job for an unknown backend; say so now, naming the field.
  const unknown = fromSpecIssues(specIssuesOf(errors.filter((e) => e.kind === 'unknown-backend')));
  if (unknown.length) {
    metrics.submissions.inc({ outcome: 'invalid_spec' });
    return new ProblemError('invalid-spec', summarize(unknown), unknown);
  }
  // The operator's policy (jobspec/policy.ts): a well-formed, signed spec that asks for what this orchestrator does not allow.
  const refused = fromSpecIssues(specIssuesOf(errors));
  metrics.submissions.inc({ outcome: 'policy_refused' });
  return new ProblemError('policy-refused', summarize(refused), refused);
}

export function jobRoutes(app: ZodApp, ctx: ApiContext): void {
  const { jobs, metrics } = ctx;
  const statusPath = (id: string): string => `/jobs/${id}`;
  const webUi = (workflowId: string): string | null =>
    ctx.webUiUrl ? `${ctx.webUiUrl}/namespaces/${encodeURIComponent(ctx.namespace)}/workflows/${encodeURIComponent(workflowId)}` : null;

  app.post(
    '/jobs',
    {
      schema: {
        summary: 'Submit a signed training job (idempotent on job_id)',
        description:
          'Body: a signed training-job-v1 spec (see /schemas/training-job-v1.json). 201 when the job was started, ' +
          '200 when the same spec was submitted before; 400 invalid spec, 401 bad signature, 403 owner not allowed or ' +
          "refused by the operator's policy (output repo and branch, paths, max_job_hours), " +
          '409 job_id used by a different spec, 413 body over 256 KiB.',
        tags: ['jobs'],
        response: { 200: submitResponseSchema, 201: submitResponseSchema },
      },
    },
    async (req, reply) => {
      const accepted = acceptSpec(req.body, { config: ctx.config, backends: ctx.backends, home: ctx.home });
      const spec = accepted.ok ? accepted.signed.spec : accepted.spec;
      if (!spec) {
        metrics.submissions.inc({ outcome: 'invalid_spec' });
        const errors = fromSpecIssues(specIssuesOf(accepted.ok ? [] : accepted.errors));
        throw new ProblemError('invalid-spec', summarize(errors), errors);
      }
      // Under owners auth an owner submits only their own specs (the operator submits any).
      const signer = ownerScope(req);
      if (signer !== null && spec.owner_did !== signer) {
        metrics.submissions.inc({ outcome: 'owner_not_allowed' });
        throw new ProblemError('owner-mismatch', `the spec's owner_did ${spec.owner_did} is not the did that signed this request (${signer}); sign the request with the spec owner's key`, [
          fieldError('body', 'owner_did', 'must be the request signer’s did'),
        ]);
      }
      if (!accepted.ok) throw refusal(accepted.errors, spec, metrics);
      const signed = accepted.signed;

      let result;
      try {
        // The span the workflow's trace hangs from (common/tracing.ts; a pass-through when tracing is off).
        result = await inSpan('POST /jobs', () => jobs.submit(signed));
      } catch (err) {
        if (err instanceof ProblemError && err.kind === 'job-id-conflict') metrics.submissions.inc({ outcome: 'conflict' });
        throw err;
      }
      metrics.submissions.inc({ outcome: result.created ? 'created' : 'existing' });
      if (result.created) metrics.jobsSubmitted.inc({ job_type: spec.job_type });
      const statusUrl = selfUrl(req, statusPath(spec.job_id));
      return reply
        .code(result.created ? 201 : 200)
        .header('location', statusUrl)
        .send({ job_id: spec.job_id, workflow_id: result.workflowId, status_url: statusUrl, web_ui_url: webUi(result.workflowId) });
    },
  );

  app.get(
    '/jobs',
    {
      schema: {
        summary: 'List jobs (a visibility query over the Forge* search attributes)',
        tags: ['jobs'],
        querystring: listQuerySchema,
        response: { 200: jobPageSchema },
      },
    },
    async (req) => {
      // An owner lists only their own jobs: the owner filter is theirs, whatever the query asked.
      const scope = ownerScope(req);
      if (scope !== null && req.query.owner !== undefined && req.query.owner !== scope) return { jobs: [], next_page_token: null };
      const page = await jobs.list(scope === null ? req.query : { ...req.query, owner: scope });
      return { ...page, jobs: page.jobs.map((j) => ({ ...j, status_url: selfUrl(req, statusPath(j.job_id)) })) };
    },
  );

  app.get(
    '/jobs/:id',
    {
      schema: {
        summary: "A job's status (the workflow's `status` query; closed jobs too)",
        tags: ['jobs'],
        params: jobParamsSchema,
        response: { 200: jobStatusSchema },
      },
    },
    async (req) => ({ ...(await jobs.status(req.params.id)) }),
  );

  app.post(
    '/jobs/:id/cancel',
    {
      schema: {
        summary: "Cancel a job with its owner's signed request (the workflow's `cancel` Update)",
        description: '202 once the workflow accepted the request; 403 bad signature or not the owner; 409 already terminal.',
        tags: ['jobs'],
        params: jobParamsSchema,
        body: cancelBodySchema,
        response: { 202: cancelResponseSchema },
      },
    },
    async (req, reply) => {
      if (req.body.job_id !== req.params.id) {
        throw new ProblemError('invalid-request', 'job_id of the signed request is not the job in the URL', [
          fieldError('body', 'job_id', `must be ${req.params.id}`),
        ]);
      }
      const { updateId } = await jobs.cancel(req.params.id, req.body);
      const statusUrl = selfUrl(req, statusPath(req.params.id));
      return reply.code(202).header('location', statusUrl).send({ job_id: req.params.id, update_id: updateId, status_url: statusUrl });
    },
  );

  app.get(
    '/jobs/:id/logs',
    {
      schema: {
        summary: "A job's logs as server-sent events",
        description:
          'Events: `log` {attempt, backend, stream, line}, `state` (transitions while following), `error` ' +
          '{attempt, backend, detail, retrying}, and `end` {state}. `follow=true` streams until the job is terminal, ' +
          'trying a failed log read again (retrying: true) until then; `tail=N` starts with the last N lines. Log ' +
          'events carry ids: reconnect with Last-Event-ID to resume.',
        tags: ['jobs'],
        params: jobParamsSchema,
        querystring: logsQuerySchema,
        response: { 200: { description: 'text/event-stream', content: { 'text/event-stream': { schema: sseDocSchema } } } },
      },
    },
    async (req, reply) => {
      await streamJobLogs({
        request: req,
        reply,
        jobs,
        backends: ctx.backends,
        metrics,
        jobId: req.params.id,
        follow: req.query.follow,
        tail: req.query.tail,
        pollMs: ctx.logPollMs,
      });
    },
  );
}
