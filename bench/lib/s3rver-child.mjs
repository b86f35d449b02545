// s3rver in its own process, so its CPU never counts against the process being measured.
// argv: <directory> <bucket>; prints {"port":…} on stdout when listening; stops on SIGTERM.
import S3rver from 's3rver';
import { installDurableWrites } from '../../test/helpers/s3rver-writes.mjs';
import { freePort } from './daemon.mjs';

installDurableWrites();

const [directory, bucket] = process.argv.slice(2);
const port = await freePort();
const server = new S3rver({ port, address: '127.0.0.1', silent: true, directory, configureBuckets: [{ name: bucket }] });
await server.run();
process.stdout.write(`${JSON.stringify({ port })}\n`);
process.on('SIGTERM', () => server.close().finally(() => process.exit(0)));
