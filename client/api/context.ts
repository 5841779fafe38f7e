/** What every route module receives: the Temporal-facing service, the operator's backends, settings, metrics. */
import type { FastifyBaseLogger, FastifyInstance, RawReplyDefaultExpression, RawRequestDefaultExpression, RawServerDefault } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { Backend } from '../../activities/backends/types';
import type { ForgeConfig } from '../../common/config';
import type { ArtifactSource } from './artifacts';
import type { JobsService } from './jobs';
import type { ApiMetrics } from './metrics';
import type { P2pflWebRecords } from './p2pfl-web';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** A route that checks its own key instead of the API's bearer token (routes/p2pfl.ts). */
    auth?: 'p2pfl-web-key';
  }
}

export interface ApiContext {
  jobs: JobsService;
  config: ForgeConfig;
  backends: ReadonlyMap<string, Backend>;
  artifacts: ArtifactSource;
  /** The orchestrator's did:key (GET /identity), or null when this API has none. */
  identity: (() => string) | null;
  metrics: ApiMetrics;
  namespace: string;
  /** Temporal Web UI base URL, or null when unknown. */
  webUiUrl: string | null;
  healthTimeoutMs: number;
  logPollMs: number;
  /** What jobs' P2PFL nodes sent through P2PFL's web logger. */
  p2pflWeb: P2pflWebRecords;
}

export type ZodApp = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression<RawServerDefault>,
  RawReplyDefaultExpression<RawServerDefault>,
  FastifyBaseLogger,
  ZodTypeProvider
>;

/** Absolute URL of a path on this API, as the client reached it. */
export function selfUrl(req: { protocol: string; host: string }, path: string): string {
  return `${req.protocol}://${req.host}${path}`;
}
