import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { crc32 } from 'node:zlib';

/** One request seen by the proxy. */
export interface ProxiedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  /** Request headers, lower-case names. */
  headers: http.IncomingHttpHeaders;
  bodyBytes: number;
  /** Base64 MD5 and CRC32 (big-endian) of the body as it arrived (to compare with the checksum headers). */
  bodyMd5: string;
  bodyCrc32: string;
  /** The body itself, for small (XML) requests only. */
  body: string | null;
  /** The body's first bytes (up to 256), whatever its size. */
  head: Buffer;
  /** Status the proxy answered (or the upstream's), once known. */
  status?: number;
}

/** Options of {@link startRecordingProxy}. */
export interface RecordingProxyOptions {
  /**
   * Answer CompleteMultipartUpload as Cloudflare R2 does: `InvalidPart` ("All non-trailing parts
   * must have the same length") when the listed parts but the last differ in length.
   */
  r2PartRule?: boolean;
  /** Refuse every CompleteMultipartUpload with this S3 error code (a store that never accepts it). */
  refuseComplete?: string;
  /** Compute bodyMd5 and bodyCrc32 (default true; off for multi-GiB bodies, where they cost most of the time). */
  hashBodies?: boolean;
  /** Hold every CreateMultipartUpload this many ms before forwarding it (a slow store). */
  delayCreateMultipartMs?: number;
  /** Hold every CompleteMultipartUpload this many ms before forwarding it unchanged (a slow store at a recording's end). */
  delayCompleteMultipartMs?: number;
}

/**
 * A recording HTTP proxy in front of an S3 endpoint: forwards every request unchanged and
 * remembers its method, path, query, headers and body length and checksums, in arrival order.
 */
export interface RecordingProxy {
  endpoint: string;
  requests: ProxiedRequest[];
  /** Most UploadPart requests in flight at once (from the request's arrival to its answer's end). */
  readonly peakPartsInFlight: number;
  close(): Promise<void>;
}

const SMALL_BODY = 64 * 1024;
const HEAD_BYTES = 256;

function s3Error(res: http.ServerResponse, status: number, code: string, message: string): void {
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message></Error>`;
  res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

export async function startRecordingProxy(target: string, options: RecordingProxyOptions = {}): Promise<RecordingProxy> {
  const t = new URL(target);
  const requests: ProxiedRequest[] = [];
  /** Bytes of the last UploadPart of each `<uploadId>/<partNumber>` that the store accepted. */
  const partBytes = new Map<string, number>();
  const hash = options.hashBodies !== false;
  let partsInFlight = 0;
  let peakPartsInFlight = 0;
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://proxy');
    const entry: ProxiedRequest = {
      method: req.method ?? 'GET', path: url.pathname, query: url.searchParams, headers: req.headers, bodyBytes: 0, bodyMd5: '', bodyCrc32: '', body: null, head: Buffer.alloc(0),
    };
    requests.push(entry);
    const md5 = createHash('md5');
    let crc = 0;
    const small: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      if (entry.head.length < HEAD_BYTES) entry.head = Buffer.concat([entry.head, c.subarray(0, HEAD_BYTES - entry.head.length)]);
      entry.bodyBytes += c.length;
      if (hash) {
        md5.update(c);
        crc = crc32(c, crc);
      }
      if (entry.bodyBytes <= SMALL_BODY) small.push(c);
    });
    const isComplete = entry.method === 'POST' && url.searchParams.has('uploadId');
    const isPart = entry.method === 'PUT' && url.searchParams.has('uploadId') && url.searchParams.has('partNumber');
    if (isPart) {
      partsInFlight++;
      peakPartsInFlight = Math.max(peakPartsInFlight, partsInFlight);
      res.once('close', () => partsInFlight--);
    }
    const finishBody = (): void => {
      entry.bodyMd5 = md5.digest('base64');
      const b = Buffer.alloc(4);
      b.writeUInt32BE(crc >>> 0, 0);
      entry.bodyCrc32 = b.toString('base64');
      entry.body = entry.bodyBytes <= SMALL_BODY ? Buffer.concat(small).toString('utf8') : null;
    };
    const forward = (body: Buffer | null): void => {
      const upstream = http.request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
        entry.status = up.statusCode ?? 502;
        if (isPart && entry.status === 200) partBytes.set(`${url.searchParams.get('uploadId')}/${url.searchParams.get('partNumber')}`, entry.bodyBytes);
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      });
      upstream.on('error', () => {
        res.destroy();
      });
      if (body === null) {
        req.pipe(upstream);
        req.on('end', finishBody);
      } else {
        upstream.end(body);
      }
    };
    const isCreate = entry.method === 'POST' && url.searchParams.has('uploads');
    const delay = isCreate ? options.delayCreateMultipartMs : isComplete ? options.delayCompleteMultipartMs : undefined;
    if (delay !== undefined) {
      req.pause();
      setTimeout(() => forward(null), delay);
      return;
    }
    if (!isComplete || (options.r2PartRule !== true && options.refuseComplete === undefined)) {
      forward(null);
      return;
    }
    req.on('end', () => {
      finishBody();
      const body = Buffer.concat(small);
      if (options.refuseComplete !== undefined) {
        entry.status = 400;
        s3Error(res, 400, options.refuseComplete, 'refused by the test proxy');
        return;
      }
      const uploadId = url.searchParams.get('uploadId');
      const listed = [...body.toString('utf8').matchAll(/<PartNumber>(\d+)<\/PartNumber>/g)].map((m) => Number(m[1]));
      const sizes = listed.map((n) => partBytes.get(`${uploadId}/${n}`) ?? -1);
      const leading = sizes.slice(0, -1);
      if (leading.some((s) => s !== leading[0])) {
        entry.status = 400;
        s3Error(res, 400, 'InvalidPart', 'All non-trailing parts must have the same length.');
        return;
      }
      forward(body);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    get peakPartsInFlight() {
      return peakPartsInFlight;
    },
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
