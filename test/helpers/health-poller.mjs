// Child process of the chaos test: asks GET /health every 100 ms on one keep-alive connection,
// from a process of its own (the test process is busy with the misbehaving clients, and its own
// event-loop lag would count against the daemon), and prints one JSON line per answer. Once a
// second it also reads the daemon's own event-loop delay from /metrics (max since the last scrape).
// argv: base URL.
const [base] = process.argv.slice(2);
for (let n = 1; ; n++) {
  if (n % 10 === 0) {
    try {
      const text = await (await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
      const line = text.split('\n').find((l) => l.startsWith('audio_ingestd_nodejs_eventloop_lag_max_seconds '));
      if (line) process.stdout.write(`${JSON.stringify({ lagMax: Number(line.split(' ')[1]) })}\n`);
    } catch {
      // counted by the /health polls
    }
  }
  const started = performance.now();
  try {
    const res = await fetch(`${base}/health`, { signal: AbortSignal.timeout(10_000) });
    await res.arrayBuffer();
    process.stdout.write(`${JSON.stringify({ ms: performance.now() - started, status: res.status })}\n`);
  } catch (err) {
    process.stdout.write(`${JSON.stringify({ ms: performance.now() - started, error: String(err) })}\n`);
  }
  await new Promise((resolve) => setTimeout(resolve, 100));
}
