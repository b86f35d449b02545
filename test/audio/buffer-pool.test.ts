import t from 'tap';
import { BufferPool } from '../../src/audio/buffer-pool.js';

t.test('whole buffers are reused by size; views and overflow are not kept', async (t) => {
  const pool = new BufferPool(1000);
  const a = pool.acquire(400);
  t.equal(a.length, 400);
  t.equal(a.byteOffset, 0);
  pool.release(a);
  t.equal(pool.pooledBytes, 400);
  t.equal(pool.acquire(400), a, 'the same buffer comes back');
  t.equal(pool.pooledBytes, 0);
  t.not(pool.acquire(400), a, 'a buffer is handed out once');
  pool.release(a.subarray(0, 100));
  pool.release(a.subarray(100));
  t.equal(pool.pooledBytes, 0, 'views are never pooled');
  pool.release(Buffer.alloc(600));
  pool.release(Buffer.alloc(600));
  t.equal(pool.pooledBytes, 600, 'bounded by maxBytes');
  t.equal(pool.acquire(500).length, 500, 'another size is a fresh buffer');
});
