import { createRequire } from 'node:module';
import type * as UWS from 'uWebSockets.js';

const require = createRequire(import.meta.url);

/**
 * The uWebSockets.js package used here falls back to a slow pure-JS implementation when its
 * native binary does not load, printing only a console warning. We load it once, then check
 * that the module really is the native addon: its functions are `[native code]` and a
 * `uws_*.node` file is in the require cache.
 */
const uws = require('uWebSockets.js') as typeof UWS;

function detectNative(): { native: boolean; binary: string | undefined } {
  const binary = Object.keys(require.cache).find((k) => /uws_[a-z0-9]+_[a-z0-9]+_\d+\.node$/.test(k));
  const nativeApp = /\[native code\]/.test(Function.prototype.toString.call(uws.App));
  return { native: nativeApp && binary !== undefined, binary };
}

export const uwsRuntime = detectNative();
export default uws;
export type { HttpRequest, HttpResponse, TemplatedApp, WebSocket, us_listen_socket, us_socket_context_t } from 'uWebSockets.js';
