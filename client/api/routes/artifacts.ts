/**
 * /jobs/:id/artifacts: the job's signed manifest and streamed downloads of the files it lists. A download is found
 * by exact name in the manifest, never by a path from the request, so no name can reach outside the job's files.
 */
import { artifactManifestSchema, type ArtifactManifest } from '../../../common/artifact-manifest';
import { MODEL_SIG_FILE } from '../../../common/model-signing';
import { PROVENANCE_FILE } from '../../../common/provenance';
import type { JobStatus } from '../../../workflows/messages';
import type { ApiContext, ZodApp } from '../context';
import { fieldError, ProblemError } from '../problem';
import { artifactListSchema, artifactNameParamsSchema, jobParamsSchema } from '../schemas';

/** Served by name next to the files (a manifest path can never be one of these). */
const SIGNATURE_FILES: readonly string[] = [MODEL_SIG_FILE, PROVENANCE_FILE];

export function artifactRoutes(app: ZodApp, ctx: ApiContext): void {
  /** The job's manifest, checked against the schema (a malformed one is the server's fault: 500). */
  const manifestOf = async (jobId: string): Promise<{ raw: Record<string, unknown>; manifest: ArtifactManifest; status: JobStatus } | null> => {
    const status = await ctx.jobs.status(jobId);
    const raw = await ctx.artifacts.manifest(jobId, status);
    if (raw === null || raw === undefined) return null;
    const parsed = artifactManifestSchema.safeParse(raw);
    if (!parsed.success) throw new Error(`stored artifact manifest of job ${jobId} is malformed: ${parsed.error.message}`);
    return { raw: raw as Record<string, unknown>, manifest: parsed.data, status };
  };

  app.get(
    '/jobs/:id/artifacts',
    {
      schema: {
        summary: "The job's artifacts and their signed manifest (empty until the job has produced any)",
        tags: ['artifacts'],
        params: jobParamsSchema,
        response: { 200: artifactListSchema },
      },
    },
    async (req) => {
      const id = req.params.id;
      const found = await manifestOf(id);
      return {
        job_id: id,
        manifest: found?.raw ?? null,
        artifacts: (found?.manifest.files ?? []).map((f) => ({
          name: f.path,
          size: f.size,
          sha256: f.sha256,
          url: `/jobs/${id}/artifacts/${encodeURIComponent(f.path)}`,
        })),
      };
    },
  );

  app.get(
    '/jobs/:id/artifacts/:name',
    {
      schema: {
        summary: 'Download one artifact (name as listed, URL-encoded); Content-Length and X-Artifact-SHA256 headers',
        tags: ['artifacts'],
        params: artifactNameParamsSchema,
      },
    },
    async (req, reply) => {
      const { id, name } = req.params;
      if (SIGNATURE_FILES.includes(name)) {
        // Signed by the orchestrator, checked by the client (cf-fetch-artifacts, model_signing): served as committed.
        const status = await ctx.jobs.status(id);
        const text = (await ctx.artifacts.signatureFile?.(id, name, status)) ?? null;
        if (text === null) throw new ProblemError('not-found', `job ${id} has no ${name} (committed before models carried one, or not committed yet)`);
        return reply.header('content-type', 'application/json').send(text);
      }
      const found = await manifestOf(id);
      const file = found?.manifest.files.find((f) => f.path === name);
      if (!found || !file) throw new ProblemError('not-found', `job ${id} has no artifact named ${JSON.stringify(name)}`, [fieldError('path', 'name', 'not in the job’s artifact manifest')]);
      const stream = await ctx.artifacts.open(id, file, found.status);
      const basename = file.path.split('/').at(-1) ?? 'artifact';
      return reply
        .header('content-type', 'application/octet-stream')
        .header('content-length', String(file.size))
        .header('x-artifact-sha256', file.sha256)
        .header('repr-digest', `sha-256=:${Buffer.from(file.sha256, 'hex').toString('base64')}:`)
        .header('content-disposition', `attachment; filename="${basename.replace(/[^A-Za-z0-9._-]/g, '_')}"`)
        .send(stream);
    },
  );
}
