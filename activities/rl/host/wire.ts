/**
 * The policy process's side of the wire (`forge-trainer grpo-server`): the events it prints on stdout and the JSON
 * its HTTP API answers, each checked with zod where it enters, and the one client call every route goes through.
 */
import { ApplicationFailure } from '@temporalio/activity';
import type { z } from 'zod';
import { RL_FAILURE } from '../../../common/rl-names';
import { errorSchema, servingSchema } from './wire-schemas';

export { exportSchema, stepSchema, storedSchema } from './wire-schemas';

export type ServingEvent = z.infer<typeof servingSchema>;

/** A non-2xx answer of the policy process: its status and its error message. */
export class HttpFailure extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** The run's session is gone (process exited, host drained): the workflow moves it to another host. */
export function lost(message: string): ApplicationFailure {
  return ApplicationFailure.create({ message, type: RL_FAILURE.SESSION_LOST, nonRetryable: true });
}

/** The last lines of a process's stderr, for error messages. */
export function tail(text: string): string {
  return text.trim().split('\n').slice(-3).join(' | ') || '(no output)';
}

/** Where a call goes: the session's base URL, its tokens, and whether its process has exited. */
export interface SessionEndpoint {
  id: string;
  url: string;
  token: string;
  adminToken: string;
  exited: boolean;
  out: { stderr: string };
}

/** One JSON call to the policy process; `admin` routes carry the admin token, the others the rollout token. */
export async function callSession(
  s: SessionEndpoint,
  method: string,
  route: string,
  body: unknown,
  admin: boolean,
  signal?: AbortSignal,
): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(`${s.url}${route}`, {
      method,
      headers: { 'content-type': 'application/json', authorization: `Bearer ${admin ? s.adminToken : s.token}` },
      body: body === undefined ? null : JSON.stringify(body),
      ...(signal ? { signal } : {}),
    });
  } catch (err) {
    if (s.exited) throw lost(`trainer session ${s.id} exited: ${tail(s.out.stderr)}`);
    throw err;
  }
  const text = await res.text();
  if (!res.ok) {
    let message = text.slice(0, 500);
    try {
      const e = errorSchema.safeParse(JSON.parse(text));
      if (e.success) message = e.data.error.message;
    } catch {
      // not JSON
    }
    throw new HttpFailure(res.status, message);
  }
  return JSON.parse(text) as unknown;
}
