// s3rver 3.7's filesystem store answers a PutObject or an UploadPart once the body has gone
// through its hashing transform, not once the file is written (it resolves on the transform's
// 'finish' and never listens to the write stream). The client's next request can then find the
// object short, or a CompleteMultipartUpload reads the part files and removes the upload's
// folder while a part's write stream has still to open it: that stream's ENOENT has no listener
// and surfaces as an uncaught exception in whichever process runs s3rver (a test's, or the
// bench's child). Every user of s3rver here installs these two methods, which answer after the
// file is on disk and reject on any error of the body or of the file.
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';

const FilesystemStore = createRequire(import.meta.url)('s3rver/lib/stores/filesystem.js');

/** Writes `content` (a Buffer or a readable) to `path`; its size and MD5 once the file is written. */
async function writeHashed(path, content) {
  await mkdir(dirname(path), { recursive: true });
  const md5 = createHash('md5');
  if (Buffer.isBuffer(content)) {
    await writeFile(path, content);
    return { size: content.length, md5: md5.update(content).digest('hex') };
  }
  let size = 0;
  const hashing = new Transform({
    transform(chunk, _encoding, callback) {
      md5.update(chunk);
      size += chunk.length;
      callback(null, chunk);
    },
  });
  await pipeline(content, hashing, createWriteStream(path));
  return { size, md5: md5.digest('hex') };
}

let installed = false;

/** Replaces s3rver's putObject and putPart with versions that answer once the bytes are written. */
export function installDurableWrites() {
  if (installed) return;
  installed = true;
  FilesystemStore.prototype.putObject = async function putObject(object) {
    const { size, md5 } = await writeHashed(this.getResourcePath(object.bucket, object.key, 'object'), object.content);
    await this.putMetadata(object.bucket, object.key, object.metadata, md5);
    return { size, md5 };
  };
  FilesystemStore.prototype.putPart = async function putPart(bucket, uploadId, partNumber, content) {
    const partPath = join(this.getResourcePath(bucket, undefined, 'uploads'), uploadId, String(partNumber));
    const written = await writeHashed(partPath, content);
    await writeFile(`${partPath}.md5`, written.md5);
    return written;
  };
}
