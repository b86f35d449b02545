import { AppError } from '../errors.js';
import { type FsObjectStore, verifyPresigned } from '../storage/fs-store.js';
import type { HttpServer } from './server.js';

export interface ObjectRoutesOptions {
  server: HttpServer;
  store: () => FsObjectStore;
  secret: () => string;
}

/**
 * `GET /v1/objects/<key>?expires=…&signature=…`: what the fs store's presigned URLs point at,
 * so the embedded default hands out working links like S3 does. The signature covers the key
 * and the expiry; the body is streamed from disk.
 */
export function registerObjectRoutes(o: ObjectRoutesOptions): void {
  o.server.route('get', '/v1/objects/*', 'objects', async (ctx) => {
    const key = ctx.path
      .slice('/v1/objects/'.length)
      .split('/')
      .map((s) => decodeURIComponent(s))
      .join('/');
    const expires = ctx.query.get('expires') ?? '';
    const signature = ctx.query.get('signature') ?? '';
    if (!verifyPresigned(o.secret(), key, expires, signature)) throw new AppError('INVALID_SIGNATURE', 'the link is invalid or has expired');
    const found = await o.store().head(key);
    if (!found) throw new AppError('NOT_FOUND', 'no such object');
    const body = await o.store().get(key);
    return { status: 200, body, contentType: found.contentType ?? 'application/octet-stream' };
  });
}
