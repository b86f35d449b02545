import { z } from 'zod';
import { AppError } from '../errors.js';
import { json, type HttpServer } from '../http/server.js';
import type { Tenant } from '../tenants/tenant-registry.js';
import { egressParamsSchema } from './egress-params.js';
import { mintEgressToken } from './egress-token.js';

/** The egress parameters plus the lifetime of the URL. */
export const egressUrlRequestSchema = egressParamsSchema.extend({
  ttlSeconds: z.number().int().min(10).max(7 * 24 * 3600).optional(),
});

export type EgressUrlRequest = z.infer<typeof egressUrlRequestSchema>;

/** Builds the ready-to-use WebSocket URL for `startTrackEgress`. */
export async function buildEgressUrl(args: { baseUrl: string; secret: string; tenant: string; request: EgressUrlRequest; defaultTtlSec: number }): Promise<{ websocketUrl: string; expiresAt: string }> {
  const { token, expiresAt } = await mintEgressToken(args.secret, { tenant: args.tenant, ...args.request }, args.request.ttlSeconds ?? args.defaultTtlSec);
  const url = new URL('/egress-audio', args.baseUrl.replace(/^http/, 'ws'));
  url.searchParams.set('token', token);
  return { websocketUrl: url.toString(), expiresAt: expiresAt.toISOString() };
}

export interface EgressUrlRouteOptions {
  server: HttpServer;
  authenticate: (headers: Record<string, string>) => Tenant;
  secret: string;
  baseUrl: () => string;
  defaultTtlSec: number;
  maxBodyBytes: number;
}

/** `POST /v1/egress/urls` (API key): `{roomName, trackId?, participant?, meetingId?, ttlSeconds?}` → `{websocketUrl, expiresAt}`. */
export function registerEgressUrlRoute(o: EgressUrlRouteOptions): void {
  o.server.route('post', '/v1/egress/urls', 'egress-urls', async (ctx) => {
    const tenant = o.authenticate(ctx.headers);
    const parsed = egressUrlRequestSchema.safeParse(await ctx.readJson(o.maxBodyBytes));
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new AppError('INVALID_PARAMETER', `${issue.path.join('.') || 'body'}: ${issue.message}`, {
        details: { problems: parsed.error.issues.map((i) => ({ field: i.path.join('.'), message: i.message })) },
      });
    }
    return json(201, await buildEgressUrl({ baseUrl: o.baseUrl(), secret: o.secret, tenant: tenant.id, request: parsed.data, defaultTtlSec: o.defaultTtlSec }));
  });
}
