/**
 * TLS to the forge agent: a certificate derived per attempt (the same on every replica, different per attempt),
 * served by the agent, pinned by the orchestrator; a client pinning another certificate, or speaking plain HTTP,
 * gets nothing. Through the prime-intellect backend with `agent_tls`: the pod's agent is read and its outputs
 * collected over TLS.
 */
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { agentTls } from '../../activities/backends/remote/agent-tls';
import { AgentClient } from '../../activities/backends/remote/remote-agent';
import { agentCommand } from '../../activities/backends/remote/remote-agent-script';
import { PrimeIntellectBackend } from '../../activities/backends/prime-intellect/prime-intellect';
import { parseConfig } from '../../common/config';
import { trainingJobSpecSchema } from '../../jobspec/schema';
import { FAKE_TRAINER_SH, FakeContainer } from '../fakes/container';
import { FakePrimeIntellect } from '../fakes/prime-intellect';
import { pollUntil } from '../helpers/forge';
import { makeSignedSpec, signedOf } from '../jobspec/fixtures';

const TOKEN = 'f'.repeat(40);
const tmp = (prefix: string): string => mkdtempSync(path.join(os.tmpdir(), prefix));

test('the certificate is derived: self-signed Ed25519, the same for the same attempt, another for another attempt or credential', () => {
  const a = agentTls('cred', 'pi', 'job', 1);
  const x = new X509Certificate(a.cert);
  expect(x.subject).toBe('CN=forge-agent');
  expect(x.verify(x.publicKey)).toBe(true);
  expect(x.publicKey.asymmetricKeyType).toBe('ed25519');
  expect(agentTls('cred', 'pi', 'job', 1)).toEqual(a);
  expect(agentTls('cred', 'pi', 'job', 2).cert).not.toBe(a.cert);
  expect(agentTls('other', 'pi', 'job', 1).cert).not.toBe(a.cert);
});

test('the agent speaks TLS with its certificate: the pinned client reads it; another pin or plain HTTP gets nothing', async () => {
  const tls = agentTls('cred', 'pi', 'job', 1);
  const { command, args } = agentCommand(['sh', '-c', 'printf weights > "$FORGE_OUTPUT_DIR/model.safetensors"; echo "key=${FORGE_AGENT_TLS_KEY_B64:-unset}"']);
  const c = await FakeContainer.start(
    [...command, ...args],
    {
      FORGE_AGENT_TOKEN: TOKEN,
      FORGE_SPEC_B64: Buffer.from('{}').toString('base64'),
      FORGE_AGENT_TLS_CERT_B64: Buffer.from(tls.cert).toString('base64'),
      FORGE_AGENT_TLS_KEY_B64: Buffer.from(tls.key).toString('base64'),
    },
    { programs: {} },
  );
  try {
    const url = `https://127.0.0.1:${c.port}`;
    const pinned = new AgentClient(url, TOKEN, 3000, tls.cert);
    const s = await pollUntil(async () => {
      const st = await pinned.state();
      return st.phase === 'done' ? st : undefined;
    }, 'the agent reports done over TLS', 20_000);
    const dir = tmp('agent-tls-dl-');
    expect(await pinned.download(s.done, dir)).toEqual(['model.safetensors']);
    expect(readFileSync(path.join(dir, 'model.safetensors'), 'utf8')).toBe('weights');
    // The trainer never saw the key.
    expect(c.lines).toContain('key=unset');

    const wrong = await new AgentClient(url, TOKEN, 3000, agentTls('cred', 'pi', 'job', 2).cert).state();
    expect(wrong).toMatchObject({ phase: 'unreachable', detail: expect.stringMatching(/the server certificate is not the one published for it/) });
    expect(JSON.stringify(wrong)).not.toContain(TOKEN);
    expect(await new AgentClient(`http://127.0.0.1:${c.port}`, TOKEN, 3000).state()).toMatchObject({ phase: 'unreachable' });
  } finally {
    c.kill();
  }
});

test('prime-intellect with agent_tls: the pod gets the certificate, status and outputs come over TLS', async () => {
  const KEY = 'pit_tls-key-0123456789';
  const fake = new FakePrimeIntellect({
    apiKey: KEY,
    offers: [{ cloudId: 'c1', gpuType: 'CPU_NODE', gpuCount: 1, price: 1 }],
    templates: { 'tpl-ok': { programs: { 'forge-trainer': ['/bin/sh', FAKE_TRAINER_SH, 'ok', '0.2'] } } },
  });
  await fake.start();
  try {
    const config = parseConfig({
      backends: { pi: { kind: 'prime-intellect', api_url: fake.url, api_key: KEY, hourly_usd: 3, request_timeout_ms: 5000, agent_tls: true, trainers: { ok: { template_id: 'tpl-ok' } } } },
    }).backends.pi;
    if (config?.kind !== 'prime-intellect') throw new Error('not a prime-intellect config');
    const backend = new PrimeIntellectBackend('pi', config, tmp('pi-home-'));
    const raw = makeSignedSpec({ trainer: { image: 'ok' }, backend: { provider: 'pi', max_cost_usd: 5 } });
    const spec = trainingJobSpecSchema.parse(raw);
    const ref = await backend.submit(signedOf(raw), 1);
    expect(fake.pods.get(ref.id)?.env.FORGE_AGENT_TLS_CERT_B64).toBe(Buffer.from(agentTls(KEY, 'pi', spec.job_id, 1).cert).toString('base64'));
    const done = await pollUntil(async () => {
      const st = await backend.status(ref);
      return st.state === 'SUCCEEDED' || st.state === 'FAILED' ? st : undefined;
    }, 'the pod ends', 20_000);
    expect(done).toMatchObject({ state: 'SUCCEEDED', outputsOnDeployment: true });
    expect(await backend.collectArtifacts(ref, tmp('pi-out-'))).toEqual(['metrics.json']);
    await backend.close(ref);
  } finally {
    await fake.stop();
  }
});
