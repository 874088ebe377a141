// Publish the life of one operation to a Pub/Sub topic that the tracker pulls from:
// created -> progress 25% -> progress 75% -> succeeded (or failed), as CloudEvents in
// Pub/Sub binary content mode, numbered by ce-sequence and ordered by the operation
// name as ordering key. See docs/publishing.md.
//
//   node main.mjs --topic projects/P/topics/T --operation operations/demo-1 [--outcome failed]
//
// Honours PUBSUB_EMULATOR_HOST (the client does). With --print-vector CASE it prints
// what encode() makes of a case of schemas/testdata/vectors.json instead.
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PubSub } from '@google-cloud/pubsub';
import { publish } from './events.mjs';

const { values: args } = parseArgs({
  options: {
    topic: { type: 'string', default: process.env.TRACKER_TOPIC ?? '' },
    operation: { type: 'string', default: '' },
    outcome: { type: 'string', default: 'succeeded' },
    source: { type: 'string', default: '/examples/node' },
    'print-vector': { type: 'string' },
    vectors: { type: 'string', default: fileURLToPath(new URL('../../schemas/testdata/vectors.json', import.meta.url)) },
  },
});

async function run({ topic: topicName, operation, outcome, source }) {
  const project = /^projects\/([^/]+)\/topics\/[^/]+$/.exec(topicName)?.[1];
  if (!project || !operation) throw new Error('need --topic projects/P/topics/T and --operation operations/NAME');
  const last = {
    succeeded: { response: { rows: 1200, uri: 'gs://example/export.csv' } },
    failed: { error: { code: 9, message: 'bucket example does not exist' } }, // FAILED_PRECONDITION
  }[outcome];
  if (!last) throw new Error(`--outcome ${outcome}: want succeeded or failed`);

  const pubsub = new PubSub({ projectId: project });
  const topic = pubsub.topic(topicName, { messageOrdering: true });
  const steps = [
    ['created', { operationType: 'export', labels: { example: 'node' } }],
    ['progress', { percent: 25, message: 'reading rows' }],
    ['progress', { percent: 75, message: 'writing file' }],
    [outcome, last],
  ];
  try {
    for (const [i, [type, data]] of steps.entries()) {
      await publish(topic, {
        type,
        source,
        id: randomUUID(), // new per event; keep it when you retry the same event
        subject: operation,
        time: new Date(),
        sequence: i + 1,
        data,
      });
      console.log(`published ${type} ${operation} (sequence ${i + 1})`);
    }
  } finally {
    await pubsub.close();
  }
}

try {
  if (args['print-vector']) {
    const { printVector } = await import('./vector.mjs');
    printVector(args.vectors, args['print-vector']);
  } else {
    await run(args);
  }
} catch (err) {
  console.error(`producer: ${err.message}`);
  process.exitCode = 1;
}
