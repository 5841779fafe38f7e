/**
 * `node dist/client/api/server.js`: the HTTP API on FORGE_API_HOST:FORGE_API_PORT (127.0.0.1:8080), against the
 * Temporal of common/temporal.ts, with the backends of the operator config (FORGE_CONFIG). Started by `npm start`
 * as a child process, to which it reports its URL over IPC once it listens.
 */
import { Client, Connection } from '@temporalio/client';
import { orchestratorKey } from '../../common/orchestrator-key';
import { modelSigningKeyFrom } from '../../common/model-signing';
import { connectionOptions, temporalAddress } from '../../common/temporal';
import { initTracing, tracingClientInterceptors } from '../../common/tracing';
import { buildApp } from './app';
import { defaultAuthMode } from './auth';
import { GitArtifactSource } from './git-artifacts';
import { readApiConfig } from './env';
import { P2pflWebRecords } from './p2pfl-web';

export interface ListeningMessage {
  type: 'forge-api-listening';
  url: string;
}

export async function main(): Promise<void> {
  const settings = readApiConfig();
  const { api, temporal, operator: config, home } = settings;
  const auth = api.FORGE_API_AUTH ?? defaultAuthMode(api.FORGE_API_HOST);
  // Lazy: the API starts (and /healthz says 503) even while Temporal is still coming up.
  const connection = Connection.lazy(connectionOptions(temporal));
  const tracing = initTracing('forge-api');
  const interceptors = tracingClientInterceptors();
  const client = new Client({ connection, namespace: temporal.TEMPORAL_NAMESPACE, identity: `forge-api@${process.pid}`, ...(interceptors ? { interceptors } : {}) });
  const app = await buildApp({
    client,
    connection,
    namespace: temporal.TEMPORAL_NAMESPACE,
    taskQueue: api.FORGE_ORCHESTRATOR_TASK_QUEUE,
    config,
    // No backends here: logs and health are read by orchestrator workers through the backends' read entities.
    // The job's committed artifacts, checked against the orchestrator's key (made on first use, shared with workers).
    artifacts: new GitArtifactSource({ home, git: config.results.git, signerDid: () => orchestratorKey(home).did }),
    identity: () => orchestratorKey(home).did,
    modelSigningKey: () => modelSigningKeyFrom(orchestratorKey(home).secretKey).publicKeyPem,
    p2pflWeb: new P2pflWebRecords(home),
    home,
    ...(api.FORGE_API_TOKEN ? { token: api.FORGE_API_TOKEN } : {}),
    auth,
    listenHost: api.FORGE_API_HOST,
    allowedHosts: api.FORGE_API_ALLOWED_HOSTS,
    webUiUrl: settings.webUiUrl,
    queryTimeoutMs: api.FORGE_API_QUERY_TIMEOUT_MS,
    healthTimeoutMs: api.FORGE_API_HEALTH_TIMEOUT_MS,
    logPollMs: api.FORGE_API_LOG_POLL_MS,
    logger: { level: api.FORGE_API_LOG_LEVEL, redact: ['req.headers.authorization', 'req.headers["x-api-key"]', 'req.headers.signature'] },
  });
  const address = await app.listen({ host: api.FORGE_API_HOST, port: api.FORGE_API_PORT });
  // Never log the token or Temporal credentials: only whether they are set.
  app.log.info(
    {
      url: address,
      temporal: temporalAddress(temporal),
      namespace: temporal.TEMPORAL_NAMESPACE,
      task_queue: api.FORGE_ORCHESTRATOR_TASK_QUEUE,
      token: Boolean(api.FORGE_API_TOKEN),
      auth,
    },
    'forge API listening',
  );
  if (auth === 'token' && !api.FORGE_API_TOKEN && defaultAuthMode(api.FORGE_API_HOST) === 'owners') {
    app.log.warn(`FORGE_API_AUTH=token without FORGE_API_TOKEN on ${api.FORGE_API_HOST}: anyone who reaches this address reads and submits every job; use FORGE_API_AUTH=owners`);
  }
  if (process.send) process.send({ type: 'forge-api-listening', url: address } satisfies ListeningMessage);

  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    app.log.info(`${signal}: closing`);
    await app.close();
    await connection.close();
    await tracing?.shutdown(); // sends the last spans
    process.exit(0);
  };
  process.on('SIGINT', (s) => void stop(s));
  process.on('SIGTERM', (s) => void stop(s));
  // Started by npm start: stop with the parent, even when it was killed with SIGKILL.
  process.on('disconnect', () => void stop('parent gone'));
}

if (require.main === module) {
  main().catch((err: unknown) => {
    console.error(`[api] cannot start: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
