import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { connect, type Channel, type ChannelModel, type ConsumeMessage } from 'amqplib';

const run = promisify(execFile);

export const AMQP_URL = process.env.AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672';

/** Names unique to one test run, so parallel runs and other engineers' tests never collide. */
export function uniqueNames(label: string): { prefix: string; connectionName: string } {
  const id = randomUUID().slice(0, 8);
  return { prefix: `events-test.${label}.${id}`, connectionName: `events-test-${label}-${id}` };
}

/**
 * Closes, from the broker side, every connection whose client-provided name is `name`
 * (only ours: other clients on the broker are left alone). Returns how many were closed.
 */
export async function closeConnectionsNamed(name: string): Promise<number> {
  const { stdout } = await run('rabbitmqctl', ['-q', 'list_connections', 'pid', 'client_properties']);
  const pids = stdout
    .split('\n')
    .filter((line) => line.includes(`{"connection_name","${name}"}`))
    .map((line) => line.split('\t')[0]!);
  for (const pid of pids) await run('rabbitmqctl', ['close_connection', pid, 'events test: simulated broker-side drop']);
  return pids.length;
}

/** Queue arguments as the broker reports them (`rabbitmqctl list_queues name arguments`). */
export async function queueArguments(queue: string): Promise<string | undefined> {
  const { stdout } = await run('rabbitmqctl', ['-q', 'list_queues', 'name', 'durable', 'arguments']);
  return stdout.split('\n').find((l) => l.startsWith(`${queue}\t`));
}

/** A plain consumer connection for assertions. */
export class TestConsumer {
  readonly messages: ConsumeMessage[] = [];
  private waiters: { pred: () => boolean; resolve: () => void }[] = [];
  private constructor(
    readonly model: ChannelModel,
    readonly channel: Channel,
  ) {}

  static async open(): Promise<TestConsumer> {
    const model = await connect(AMQP_URL);
    const channel = await model.createChannel();
    return new TestConsumer(model, channel);
  }

  /** Exclusive auto-delete queue bound to `exchange` with `pattern`; messages are collected. */
  async bind(exchange: string, type: string, pattern: string): Promise<string> {
    await this.channel.assertExchange(exchange, type, { durable: type === 'topic' });
    const { queue } = await this.channel.assertQueue('', { exclusive: true, autoDelete: true });
    await this.channel.bindQueue(queue, exchange, pattern);
    await this.collect(queue);
    return queue;
  }

  async collect(queue: string): Promise<void> {
    await this.channel.consume(
      queue,
      (m) => {
        if (!m) return;
        this.messages.push(m);
        this.waiters = this.waiters.filter((w) => (w.pred() ? (w.resolve(), false) : true));
      },
      { noAck: true },
    );
  }

  until(pred: () => boolean): Promise<void> {
    if (pred()) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ pred, resolve }));
  }

  async close(): Promise<void> {
    await this.model.close().catch(() => undefined);
  }
}

/** Deletes exchanges and queues a test declared, on a short-lived connection. */
export async function deleteTopology(exchanges: string[], queues: string[]): Promise<void> {
  const model = await connect(AMQP_URL);
  try {
    const ch = await model.createChannel();
    for (const q of queues) await ch.deleteQueue(q);
    for (const e of exchanges) await ch.deleteExchange(e);
  } finally {
    await model.close();
  }
}
