/**
 * Tashi coordination (docs/architecture.md §7): policy-version announcements on an MQTT 5 broker — FoxMQ, Tashi's broker on its
 * leaderless consensus, or any MQTT 5 broker (Mosquitto in tests). Set FORGE_MQTT_URL (mqtt://, mqtts://, ws://,
 * wss://) on trainer hosts and rollout workers.
 *
 *  - The trainer host publishes every new version of a job's policy, retained, QoS 1, on forge/jobs/<job_id>/policy:
 *    `{version, url, sha256, job_id, session_id, at}` (MQTT 5 content type application/json). Retained: a worker that
 *    subscribes later gets the newest at once.
 *  - Rollout workers subscribe to forge/jobs/+/policy and prefetch the announced weights (sha256-checked) into their
 *    cache, so that the next rollout activity of that version finds them on disk.
 *
 * The announcement carries no credential: the weights' URL needs the session's token, which a rollout worker learns
 * from the job's rollout activities. The broker is an accelerator only — Temporal still carries every version the
 * workflow dispatches, so a lost announcement costs a download at the activity, never correctness.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { z } from 'zod';

export const POLICY_TOPIC_FILTER = 'forge/jobs/+/policy';

export function policyTopic(jobId: string): string {
  if (!/^[A-Za-z0-9-]{1,100}$/.test(jobId)) throw new RangeError(`job id "${jobId}" cannot be an MQTT topic level`);
  return `forge/jobs/${jobId}/policy`;
}

export const policyAnnouncementSchema = z.strictObject({
  job_id: z.string().min(1),
  session_id: z.string().min(1),
  version: z.int().min(0),
  url: z.url({ protocol: /^https?$/ }),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  at: z.string(),
});
export type PolicyAnnouncement = z.infer<typeof policyAnnouncementSchema>;

export interface PolicyBusOptions {
  url: string;
  clientId: string;
  connectTimeoutMs?: number;
}

export class PolicyBus {
  private constructor(private readonly client: MqttClient) {}

  static async connect(o: PolicyBusOptions): Promise<PolicyBus> {
    const client = await mqtt.connectAsync(o.url, {
      protocolVersion: 5,
      clientId: o.clientId,
      clean: true,
      connectTimeout: o.connectTimeoutMs ?? 10_000,
      reconnectPeriod: 2_000,
    });
    // A broker that goes away is reconnected to in the background; errors must not crash the worker.
    client.on('error', () => undefined);
    return new PolicyBus(client);
  }

  get connected(): boolean {
    return this.client.connected;
  }

  async publish(a: PolicyAnnouncement): Promise<void> {
    await this.client.publishAsync(policyTopic(a.job_id), JSON.stringify(policyAnnouncementSchema.parse(a)), {
      qos: 1,
      retain: true,
      properties: { contentType: 'application/json', payloadFormatIndicator: true },
    });
  }

  /** Calls `onPolicy` for every valid announcement (the retained ones first); invalid ones go to `onInvalid`. */
  async subscribe(onPolicy: (a: PolicyAnnouncement) => void, onInvalid: (topic: string, why: string) => void = () => undefined): Promise<void> {
    this.client.on('message', (topic, payload) => {
      if (payload.length === 0) return; // a cleared announcement
      let json: unknown;
      try {
        json = JSON.parse(payload.toString('utf8'));
      } catch {
        return onInvalid(topic, 'not JSON');
      }
      const parsed = policyAnnouncementSchema.safeParse(json);
      if (!parsed.success) return onInvalid(topic, parsed.error.issues[0]?.message ?? 'invalid');
      if (topic !== policyTopic(parsed.data.job_id)) return onInvalid(topic, `announces job ${parsed.data.job_id} on another job's topic`);
      onPolicy(parsed.data);
    });
    await this.client.subscribeAsync(POLICY_TOPIC_FILTER, { qos: 1 });
  }

  /** Removes a job's retained announcement (its run ended). */
  async clear(jobId: string): Promise<void> {
    await this.client.publishAsync(policyTopic(jobId), '', { qos: 1, retain: true });
  }

  async close(): Promise<void> {
    await this.client.endAsync();
  }
}
