import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request seen by the proxy. */
export interface ProxiedRequest {
  method: string;
  path: string;
  query: URLSearchParams;
  bodyBytes: number;
}

/**
 * A recording HTTP proxy in front of an S3 endpoint: forwards every request unchanged and
 * remembers its method, path, query and body length, in arrival order.
 */
export interface RecordingProxy {
  endpoint: string;
  requests: ProxiedRequest[];
  close(): Promise<void>;
}

export async function startRecordingProxy(target: string): Promise<RecordingProxy> {
  const t = new URL(target);
  const requests: ProxiedRequest[] = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://proxy');
    const entry: ProxiedRequest = { method: req.method ?? 'GET', path: url.pathname, query: url.searchParams, bodyBytes: 0 };
    requests.push(entry);
    const upstream = http.request({ host: t.hostname, port: t.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    upstream.on('error', () => {
      res.destroy();
    });
    req.on('data', (c: Buffer) => { entry.bodyBytes += c.length; });
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
