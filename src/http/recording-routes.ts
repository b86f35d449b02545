import { AppError } from '../errors.js';
import { type CatalogRecord, MAX_LIST_LIMIT, type RecordingCatalog } from '../recording/recording-catalog.js';
import type { Tenant } from '../tenants/tenant-registry.js';
import { type HttpServer, json } from './server.js';

/** Options of {@link registerRecordingRoutes}. */
export interface RecordingRoutesOptions {
  server: HttpServer;
  authenticate: (headers: Record<string, string>) => Tenant;
  catalog: Pick<RecordingCatalog, 'get' | 'list'>;
  /** A presigned GET URL of a stored object. */
  presign: (key: string) => Promise<{ url: string; expiresAt: Date }>;
}

/** Page size of the listing when `limit` is not given. */
const DEFAULT_LIST_LIMIT = 100;

/** A catalog record as the API shows it: its id as `id`, with a presigned URL once the master is stored. */
export type RecordingView = Omit<CatalogRecord, 'recordingId'> & {
  id: string;
  url: string | null;
  urlExpiresAt: string | null;
};

/**
 * `GET /v1/recordings/:id` and `GET /v1/recordings?meetingId=…|roomName=…[&limit=…]` (API key).
 * Answers come from the catalog in the object store, so any host answers for any recording;
 * a tenant sees only its own recordings (another tenant's id is simply not found).
 */
export function registerRecordingRoutes(o: RecordingRoutesOptions): void {
  const view = async (r: CatalogRecord): Promise<RecordingView> => {
    const link = r.state === 'completed' ? await o.presign(r.key) : null;
    const { recordingId, ...rest } = r;
    return { id: recordingId, ...rest, url: link?.url ?? null, urlExpiresAt: link?.expiresAt.toISOString() ?? null };
  };

  o.server.route('get', '/v1/recordings/:id', 'recording', async (ctx) => {
    const tenant = o.authenticate(ctx.headers);
    const id = ctx.params[0] ?? '';
    const record = id.length > 0 && id.length <= 256 ? await o.catalog.get(tenant.id, id) : null;
    if (!record) throw new AppError('NOT_FOUND', 'no such recording', { details: { id: id.slice(0, 256) } });
    return json(200, await view(record));
  });

  o.server.route('get', '/v1/recordings', 'recordings', async (ctx) => {
    const tenant = o.authenticate(ctx.headers);
    const meetingId = ctx.query.get('meetingId') ?? '';
    const roomName = ctx.query.get('roomName') ?? '';
    if (meetingId === '' && roomName === '') throw new AppError('MISSING_PARAMETER', 'one of meetingId or roomName is required');
    for (const [name, value] of [['meetingId', meetingId], ['roomName', roomName]] as const) {
      if (value.length > 256) throw new AppError('INVALID_PARAMETER', `${name} is longer than 256 characters`);
    }
    const limitText = ctx.query.get('limit');
    let limit = DEFAULT_LIST_LIMIT;
    if (limitText !== null) {
      limit = /^\d{1,7}$/.test(limitText) ? Number(limitText) : NaN;
      if (!(limit >= 1 && limit <= MAX_LIST_LIMIT)) throw new AppError('INVALID_PARAMETER', `limit must be an integer from 1 to ${MAX_LIST_LIMIT}, got ${JSON.stringify(limitText)}`);
    }
    const by = meetingId !== '' ? { meetingId } : { roomName };
    const { records, truncated } = await o.catalog.list(tenant.id, by, limit);
    // both given: the meeting's recordings in that room
    const selected = meetingId !== '' && roomName !== '' ? records.filter((r) => r.roomName === roomName) : records;
    return json(200, { recordings: await Promise.all(selected.map(view)), truncated });
  });
}
