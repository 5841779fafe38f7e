/** /jobs/:id/curves.svg and /jobs/:id/curves: a job's training curves, live while it runs (client/api/curves.ts). */
import { z } from 'zod';
import { renderSvg } from '../../../common/curves';
import { committedTrainingLog, curvesResponseSchema, curvesTitle, jobCurves } from '../curves';
import type { ApiContext, ZodApp } from '../context';
import { jobParamsSchema } from '../schemas';

export function curveRoutes(app: ZodApp, ctx: ApiContext): void {
  app.get(
    '/jobs/:id/curves.svg',
    {
      schema: {
        summary: "The job's training curves as a self-contained SVG (live while it runs)",
        description:
          'finetune: train and validation loss by step; rl: mean reward, KL and mean staleness by step; p2pfl: loss by ' +
          'round. Each polyline carries its raw points in `data-points="step,value …"`. From the backends\' logs, else the ' +
          "committed training_log.jsonl, else the status's progress; the committed copy is the artifact training_curves.svg.",
        tags: ['jobs'],
        params: jobParamsSchema,
        response: { 200: { description: 'image/svg+xml', content: { 'image/svg+xml': { schema: z.string() } } } },
      },
    },
    async (req, reply) => {
      const status = await ctx.jobs.status(req.params.id);
      const curves = await jobCurves(status, ctx.backends, committedTrainingLog(ctx.artifacts, status));
      return reply
        .type('image/svg+xml; charset=utf-8')
        .header('cache-control', 'no-store')
        .header('content-security-policy', "default-src 'none'; style-src 'unsafe-inline'")
        .send(renderSvg(curves.series, { title: curvesTitle(status) }));
    },
  );

  app.get(
    '/jobs/:id/curves',
    {
      schema: {
        summary: "The job's training curves as data (the points of curves.svg)",
        tags: ['jobs'],
        params: jobParamsSchema,
        response: { 200: curvesResponseSchema },
      },
    },
    async (req) => {
      const status = await ctx.jobs.status(req.params.id);
      const curves = await jobCurves(status, ctx.backends, committedTrainingLog(ctx.artifacts, status));
      return { job_id: status.job_id, state: status.state, ...curves, svg_url: `/jobs/${status.job_id}/curves.svg` };
    },
  );
}
