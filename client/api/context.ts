/** What every route module receives: the Temporal-facing service, the operator's backends, settings, metrics. */
import type { FastifyBaseLogger, FastifyInstance, RawReplyDefaultExpression, RawRequestDefaultExpression, RawServerDefault } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import type { ForgeConfig } from '../../common/config';
import type { ArtifactSource } from './artifacts';
import type { ApiBackendReader } from './backend-readers';
import type { JobsService } from './jobs';
import type { ApiMetrics } from './metrics';
import type { P2pflWebRecords } from './p2pfl-web';

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * How the route authenticates (client/api/auth.ts): 'p2pfl-web-key' checks its own key (routes/p2pfl.ts);
     * 'public' needs nothing under owners auth; 'operator' needs the operator token; unset: an owner or the operator.
     */
    auth?: 'p2pfl-web-key' | 'public' | 'operator';
  }
}

export interface ApiContext {
  jobs: JobsService;
  config: ForgeConfig;
  /** The configured backends, read through their read entities (backend-readers.ts); tests may read in-process. */
  backends: ReadonlyMap<string, ApiBackendReader>;
  artifacts: ArtifactSource;
  /** The orchestrator's did:key (GET /identity), or null when this API has none. */
  identity: (() => string) | null;
  /** The PEM public key that checks model.sig (OpenSSF Model Signing), or null when this API has none. */
  modelSigningKey: (() => string) | null;
  metrics: ApiMetrics;
  namespace: string;
  /** Temporal Web UI base URL, or null when unknown. */
  webUiUrl: string | null;
  healthTimeoutMs: number;
  logPollMs: number;
  /** What jobs' P2PFL nodes sent through P2PFL's web logger. */
  p2pflWeb: P2pflWebRecords;
  /** FORGE_HOME: the default root of the spec policy's paths. */
  home: string;
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
