/**
 * How every process reaches Temporal: the embedded dev server by default, or a cluster / Temporal Cloud when
 * TEMPORAL_ADDRESS is set (with TEMPORAL_API_KEY or mTLS from TEMPORAL_TLS_*).
 */
import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { Connection, type ConnectionOptions } from '@temporalio/client';
import { NativeConnection, type NativeConnectionOptions } from '@temporalio/worker';

const port = z.coerce.number().int().min(1).max(65535);

export const temporalEnvSchema = z.object({
  TEMPORAL_ADDRESS: z.string().min(1).optional(),
  TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
  TEMPORAL_API_KEY: z.string().min(1).optional(),
  /** "true" forces TLS without client certificates (system CAs), e.g. for an API-key connection to a cluster. */
  TEMPORAL_TLS: z.enum(['true', 'false']).optional(),
  TEMPORAL_TLS_CERT: z.string().min(1).optional(),
  TEMPORAL_TLS_KEY: z.string().min(1).optional(),
  TEMPORAL_TLS_CA: z.string().min(1).optional(),
  TEMPORAL_TLS_SERVER_NAME: z.string().min(1).optional(),
  FORGE_TEMPORAL_PORT: port.default(7233),
  FORGE_UI_PORT: port.default(8233),
});
export type TemporalEnv = z.infer<typeof temporalEnvSchema>;

export class EnvError extends Error {
  override name = 'EnvError';
}

/** Parses and checks environment variables with a schema; the error names each bad variable. */
export function parseEnv<S extends z.ZodType>(schema: S, env: NodeJS.ProcessEnv = process.env): z.output<S> {
  // An empty variable (FOO= in a shell or compose file) means "not set".
  const present = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const result = schema.safeParse(present);
  if (!result.success) {
    const lines = result.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`);
    throw new EnvError(`invalid environment (fix or unset these; every variable, its default and meaning: docs/configuration.md):\n${lines.join('\n')}`);
  }
  return result.data;
}

export function readTemporalEnv(env: NodeJS.ProcessEnv = process.env): TemporalEnv {
  const parsed = parseEnv(temporalEnvSchema, env);
  if (Boolean(parsed.TEMPORAL_TLS_CERT) !== Boolean(parsed.TEMPORAL_TLS_KEY)) {
    throw new EnvError('invalid environment:\n  TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY must be set together');
  }
  return parsed;
}

/** The address processes connect to: TEMPORAL_ADDRESS, or the embedded dev server on FORGE_TEMPORAL_PORT. */
export function temporalAddress(t: TemporalEnv): string {
  return t.TEMPORAL_ADDRESS ?? `127.0.0.1:${t.FORGE_TEMPORAL_PORT}`;
}

type Tls = NonNullable<ConnectionOptions['tls']>;

function tlsOptions(t: TemporalEnv): Tls | undefined {
  const read = (file: string): Buffer => readFileSync(file);
  if (t.TEMPORAL_TLS_CERT && t.TEMPORAL_TLS_KEY) {
    return {
      clientCertPair: { crt: read(t.TEMPORAL_TLS_CERT), key: read(t.TEMPORAL_TLS_KEY) },
      ...(t.TEMPORAL_TLS_CA ? { serverRootCACertificate: read(t.TEMPORAL_TLS_CA) } : {}),
      ...(t.TEMPORAL_TLS_SERVER_NAME ? { serverNameOverride: t.TEMPORAL_TLS_SERVER_NAME } : {}),
    };
  }
  // An API key (Temporal Cloud) implies TLS; so does an explicit TEMPORAL_TLS=true.
  if (t.TEMPORAL_TLS === 'true' || (t.TEMPORAL_API_KEY && t.TEMPORAL_TLS !== 'false')) {
    return {
      ...(t.TEMPORAL_TLS_CA ? { serverRootCACertificate: read(t.TEMPORAL_TLS_CA) } : {}),
      ...(t.TEMPORAL_TLS_SERVER_NAME ? { serverNameOverride: t.TEMPORAL_TLS_SERVER_NAME } : {}),
    };
  }
  return undefined;
}

export function connectionOptions(t: TemporalEnv): ConnectionOptions & NativeConnectionOptions {
  const tls = tlsOptions(t);
  return {
    address: temporalAddress(t),
    ...(tls ? { tls } : {}),
    ...(t.TEMPORAL_API_KEY ? { apiKey: t.TEMPORAL_API_KEY } : {}),
  };
}

export async function connectClient(t: TemporalEnv): Promise<Connection> {
  return Connection.connect(connectionOptions(t));
}

export async function connectWorker(t: TemporalEnv): Promise<NativeConnection> {
  return NativeConnection.connect(connectionOptions(t));
}
