/** Prometheus metrics of one API instance (its own registry, so several instances can share a process in tests). */
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

export type SubmissionOutcome = 'created' | 'existing' | 'invalid_spec' | 'bad_signature' | 'owner_not_allowed' | 'conflict';

export interface ApiMetrics {
  registry: Registry;
  requests: Counter<'method' | 'route' | 'status'>;
  duration: Histogram<'method' | 'route' | 'status'>;
  submissions: Counter<'outcome'>;
  jobsSubmitted: Counter<'job_type'>;
  logStreams: Gauge;
  /** POST /jobs, end to end (validation, signature, idempotent start in Temporal). */
  submitLatency: Histogram<'status'>;
  /** GET /jobs/:id, end to end (the workflow's status query, or the closed job's result). */
  pollLatency: Histogram<'status'>;
}

const LATENCY_BUCKETS = [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export function createMetrics(): ApiMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'forge_api_' });
  const registers = [registry];
  return {
    registry,
    requests: new Counter({
      name: 'forge_api_http_requests_total',
      help: 'HTTP requests by method, route template and status code',
      labelNames: ['method', 'route', 'status'] as const,
      registers,
    }),
    duration: new Histogram({
      name: 'forge_api_http_request_duration_seconds',
      help: 'HTTP request latency by method, route template and status code',
      labelNames: ['method', 'route', 'status'] as const,
      buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    submissions: new Counter({
      name: 'forge_api_job_submissions_total',
      help: 'POST /jobs by outcome (created, existing, and each reason for refusal)',
      labelNames: ['outcome'] as const,
      registers,
    }),
    jobsSubmitted: new Counter({
      name: 'forge_api_jobs_submitted_total',
      help: 'Jobs started (workflows created) by job type',
      labelNames: ['job_type'] as const,
      registers,
    }),
    logStreams: new Gauge({
      name: 'forge_api_log_streams_open',
      help: 'Server-sent event log streams currently open',
      registers,
    }),
    submitLatency: new Histogram({
      name: 'forge_api_submit_latency_seconds',
      help: 'POST /jobs latency by status code (201 created, 200 existing, 4xx refused)',
      labelNames: ['status'] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    }),
    pollLatency: new Histogram({
      name: 'forge_api_poll_latency_seconds',
      help: 'GET /jobs/:id (status poll) latency by status code',
      labelNames: ['status'] as const,
      buckets: LATENCY_BUCKETS,
      registers,
    }),
  };
}
