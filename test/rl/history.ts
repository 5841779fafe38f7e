/** Reads a grpoRun's recorded history (every run of its continue-as-new chain): which versions each update used. */
import type { Client } from '@temporalio/client';
import { defaultPayloadConverter } from '@temporalio/common';
import type { temporal } from '@temporalio/proto';
import { dispatchedId, type RolloutInput, type UpdateInput } from '../../activities/rl/types';

export interface RecordedRun {
  runs: number;
  /** Every rollout dispatched: its step and the version it was told to generate with. */
  rollouts: { rolloutId: string; step: number; version: number }[];
  /** Every update sent: its step, per group the version that generated it, and whether it was sent while the update
   *  of the step before was still running (pipelined). */
  updates: { step: number; versions: number[]; pipelined: boolean }[];
}

function decode<T>(payloads: temporal.api.common.v1.IPayloads | null | undefined): T {
  return defaultPayloadConverter.fromPayload<T>(payloads!.payloads![0]!);
}

export async function recordedVersions(client: Client, workflowId: string): Promise<RecordedRun> {
  const rollouts = new Map<string, { rolloutId: string; step: number; version: number }>();
  let updates: { step: number; groups: string[]; pipelined: boolean }[] = [];
  let runId: string | undefined = (await client.workflow.getHandle(workflowId).describe()).runId;
  let runs = 0;
  while (runId) {
    runs++;
    const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
    const ofRun: { step: number; groups: string[]; pipelined: boolean }[] = [];
    let previous: string | undefined;
    const updateRunning = new Map<string, number>(); // scheduled event id → step, until the update closes
    for (const e of history.events ?? []) {
      const started = e.workflowExecutionStartedEventAttributes;
      if (started?.continuedExecutionRunId) previous = started.continuedExecutionRunId;
      const closed =
        e.activityTaskCompletedEventAttributes ??
        e.activityTaskFailedEventAttributes ??
        e.activityTaskTimedOutEventAttributes ??
        e.activityTaskCanceledEventAttributes;
      if (closed) updateRunning.delete(String(closed.scheduledEventId));
      const a = e.activityTaskScheduledEventAttributes;
      if (!a) continue;
      if (a.activityType?.name === 'rollout') {
        const input = decode<RolloutInput>(a.input);
        rollouts.set(input.rolloutId, { rolloutId: input.rolloutId, step: input.step, version: input.policy.version });
      } else if (a.activityType?.name === 'grpoUpdate') {
        const input = decode<UpdateInput>(a.input);
        ofRun.push({
          step: input.step,
          groups: input.groups.map((g) => g.rolloutId),
          pipelined: [...updateRunning.values()].includes(input.step - 1),
        });
        updateRunning.set(String(e.eventId), input.step);
      }
    }
    updates = [...ofRun, ...updates]; // walking back from the newest run
    runId = previous;
  }
  return {
    runs,
    rollouts: [...rollouts.values()],
    updates: updates.map((u) => ({ step: u.step, versions: u.groups.map((id) => rollouts.get(dispatchedId(id))!.version), pipelined: u.pipelined })),
  };
}
