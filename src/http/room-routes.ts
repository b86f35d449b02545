import { AppError } from '../errors.js';
import type { RoomService, RoomSessionRecord } from '../rooms/room-service.js';
import type { Tenant } from '../tenants/tenant-registry.js';
import { type HttpServer, json } from './server.js';

/** Options of {@link registerRoomRoutes}. */
export interface RoomRoutesOptions {
  server: HttpServer;
  authenticate: (headers: Record<string, string>) => Tenant;
  /** Undefined when rooms are disabled (`rooms.enabled`): the routes answer NOT_FOUND. */
  rooms: Pick<RoomService, 'getSession' | 'listSessions' | 'getJson'> | undefined;
  presign: (key: string) => Promise<{ url: string; expiresAt: Date }>;
}

const DEFAULT_LIST_LIMIT = 100;
const MAX_LIST_LIMIT = 1000;

/**
 * `GET /v1/rooms/:sessionId` (the session with its manifest) and `GET /v1/rooms?roomName=…[&limit=…]`
 * (its sessions, oldest first), API key. Answers come from the session records in the object
 * store, so any host answers; a tenant sees only its own rooms.
 */
export function registerRoomRoutes(o: RoomRoutesOptions): void {
  const service = () => {
    const s = o.rooms;
    if (!s) throw new AppError('NOT_FOUND', 'rooms are disabled (rooms.enabled)');
    return s;
  };
  const view = async (r: RoomSessionRecord) => {
    const [link, mix, dual] = await Promise.all([o.presign(r.manifestKey), o.presign(r.mixKey), r.dualKey ? o.presign(r.dualKey) : Promise.resolve(null)]);
    return { ...r, url: link.url, mixUrl: mix.url, dualUrl: dual?.url ?? null, urlExpiresAt: link.expiresAt.toISOString() };
  };

  o.server.route('get', '/v1/rooms/:sessionId', 'room', async (ctx) => {
    const tenant = o.authenticate(ctx.headers);
    const id = ctx.params[0] ?? '';
    const rooms = service();
    const record = id.length > 0 && id.length <= 256 ? await rooms.getSession(tenant.id, id) : null;
    if (!record) throw new AppError('NOT_FOUND', 'no such room session', { details: { sessionId: id.slice(0, 256) } });
    return json(200, { ...(await view(record)), manifest: await rooms.getJson(record.manifestKey) });
  });

  o.server.route('get', '/v1/rooms', 'rooms', async (ctx) => {
    const tenant = o.authenticate(ctx.headers);
    const roomName = ctx.query.get('roomName') ?? '';
    if (roomName === '') throw new AppError('MISSING_PARAMETER', 'roomName is required');
    if (roomName.length > 256) throw new AppError('INVALID_PARAMETER', 'roomName is longer than 256 characters');
    const limitText = ctx.query.get('limit');
    let limit = DEFAULT_LIST_LIMIT;
    if (limitText !== null) {
      limit = /^\d{1,7}$/.test(limitText) ? Number(limitText) : NaN;
      if (!(limit >= 1 && limit <= MAX_LIST_LIMIT)) throw new AppError('INVALID_PARAMETER', `limit must be an integer from 1 to ${MAX_LIST_LIMIT}, got ${JSON.stringify(limitText)}`);
    }
    const { sessions, truncated } = await service().listSessions(tenant.id, roomName, limit);
    return json(200, { sessions: await Promise.all(sessions.map(view)), truncated });
  });
}
