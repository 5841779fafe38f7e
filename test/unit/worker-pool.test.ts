/** Worker pools from env (workers/pool.ts) and the image entrypoint's role choice (workers/main.ts). */
import { deploymentOptions, poolWorkerOptions, readPool, readWorkerProcessEnv } from '../../workers/pool';
import { ROLES, resolveRole } from '../../workers/main';
import { ORCHESTRATOR_POOL } from '../../workers/config/orchestrator';

describe('pool env', () => {
  test('defaults, then every knob', () => {
    expect(poolWorkerOptions(readPool('ORCHESTRATOR', ORCHESTRATOR_POOL, {}))).toEqual({
      maxConcurrentWorkflowTaskExecutions: 50,
      maxConcurrentActivityTaskExecutions: 500,
      maxConcurrentLocalActivityExecutions: 50,
      maxCachedWorkflows: 100,
      shutdownGraceTime: '5 seconds',
    });
    const env = {
      FORGE_ROLLOUT_MAX_WORKFLOW_TASKS: '4',
      FORGE_ROLLOUT_MAX_ACTIVITIES: '8',
      FORGE_ROLLOUT_MAX_LOCAL_ACTIVITIES: '2',
      FORGE_ROLLOUT_MAX_CACHED_WORKFLOWS: '0',
      FORGE_ROLLOUT_WORKFLOW_POLLERS: '9', // more pollers than slots: capped at the slots
      FORGE_ROLLOUT_ACTIVITY_POLLERS: '3',
      FORGE_ROLLOUT_ACTIVITIES_PER_SECOND: '2.5',
      FORGE_ROLLOUT_TASK_QUEUE_ACTIVITIES_PER_SECOND: '100',
      FORGE_ROLLOUT_SHUTDOWN_GRACE_SECONDS: '600',
    };
    expect(poolWorkerOptions(readPool('ROLLOUT', ORCHESTRATOR_POOL, env))).toEqual({
      maxConcurrentWorkflowTaskExecutions: 4,
      maxConcurrentActivityTaskExecutions: 8,
      maxConcurrentLocalActivityExecutions: 2,
      maxCachedWorkflows: 0,
      maxConcurrentWorkflowTaskPolls: 4,
      maxConcurrentActivityTaskPolls: 3,
      maxActivitiesPerSecond: 2.5,
      maxTaskQueueActivitiesPerSecond: 100,
      shutdownGraceTime: '600 seconds',
    });
  });

  test('a bad value names its variable', () => {
    expect(() => readPool('GRPO', ORCHESTRATOR_POOL, { FORGE_GRPO_MAX_ACTIVITIES: '0' })).toThrow(/FORGE_GRPO_MAX_ACTIVITIES/);
    expect(() => readPool('GRPO', ORCHESTRATOR_POOL, { FORGE_GRPO_ACTIVITIES_PER_SECOND: 'fast' })).toThrow(/FORGE_GRPO_ACTIVITIES_PER_SECOND/);
  });
});

describe('process env: telemetry, health, versioning', () => {
  test('addresses: a port binds every interface, "off" and unset disable', () => {
    expect(readWorkerProcessEnv({ FORGE_METRICS_ADDRESS: '9464' }).FORGE_METRICS_ADDRESS).toBe('0.0.0.0:9464');
    expect(readWorkerProcessEnv({ FORGE_METRICS_ADDRESS: '127.0.0.1:9464' }).FORGE_METRICS_ADDRESS).toBe('127.0.0.1:9464');
    expect(readWorkerProcessEnv({ FORGE_METRICS_ADDRESS: 'off' }).FORGE_METRICS_ADDRESS).toBeNull();
    expect(readWorkerProcessEnv({}).FORGE_HEALTH_ADDRESS).toBeUndefined();
    expect(() => readWorkerProcessEnv({ FORGE_HEALTH_ADDRESS: 'http://x' })).toThrow(/FORGE_HEALTH_ADDRESS/);
  });

  test('worker deployment versioning: pinned by default, both names or neither', () => {
    expect(deploymentOptions(readWorkerProcessEnv({}))).toEqual({});
    expect(deploymentOptions(readWorkerProcessEnv({ FORGE_WORKER_DEPLOYMENT: 'forge-orchestrator', FORGE_WORKER_BUILD_ID: '2026.11.27-abc' }))).toEqual({
      workerDeploymentOptions: {
        version: { deploymentName: 'forge-orchestrator', buildId: '2026.11.27-abc' },
        useWorkerVersioning: true,
        defaultVersioningBehavior: 'PINNED',
      },
    });
    const auto = readWorkerProcessEnv({ FORGE_WORKER_DEPLOYMENT: 'd', FORGE_WORKER_BUILD_ID: 'b', FORGE_WORKER_VERSIONING_BEHAVIOR: 'auto-upgrade' });
    expect(deploymentOptions(auto).workerDeploymentOptions?.defaultVersioningBehavior).toBe('AUTO_UPGRADE');
    expect(() => readWorkerProcessEnv({ FORGE_WORKER_BUILD_ID: 'b' })).toThrow(/must be set together/);
  });
});

describe('entrypoint roles', () => {
  test('built roles resolve to a main()', () => {
    expect(typeof resolveRole('orchestrator').main).toBe('function');
    expect(typeof resolveRole('api').main).toBe('function');
    expect(typeof resolveRole('setup').main).toBe('function');
  });

  test('unknown, missing and unbuilt roles fail with a clear message', () => {
    expect(() => resolveRole(undefined)).toThrow(/no role given.*FORGE_ROLE/s);
    expect(() => resolveRole('bogus')).toThrow(/unknown role "bogus".*orchestrator/s);
    expect(Object.keys(ROLES)).toEqual(['orchestrator', 'api', 'rollout', 'grpo', 'setup']);
    for (const role of ['rollout', 'grpo'] as const) {
      let built = true;
      try {
        resolveRole(role);
      } catch (err) {
        built = false;
        expect((err as Error).message).toMatch(new RegExp(`role "${role}" .* is not built into this image: workers/${role}\\.ts does not exist`));
      }
      // Once the RL issue adds workers/rollout.ts and workers/grpo.ts, they resolve like the others.
      if (built) expect(typeof resolveRole(role).main).toBe('function');
    }
  });
});
