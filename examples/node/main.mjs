// Publish the life of one operation: created -> progress 25% -> progress 75% ->
// succeeded (or failed), as CloudEvents in binary content mode, numbered by
// ce-sequence within its ce-attempt. To a Pub/Sub topic that the tracker pulls from
// (ordered by the operation name as ordering key), or with --url straight to the
// tracker's POST /v1/events, sending $TRACKER_TOKEN as a bearer token when it is set.
// See docs/publishing.md.
//
// A restart is the next attempt: with --url it reads the operation first and, if it
// exists, publishes as its attempt + 1 with sequence from 1 (over Pub/Sub, pass
// --attempt). It stops when the tracker's answer says the operation was cancelled.
// --exit-after N stops after N events without ending the operation, as a worker killed
// mid-run would.
//
//   node main.mjs --topic projects/P/topics/T --operation operations/demo-1 [--outcome failed]
//   TRACKER_TOKEN=... node main.mjs --url http://127.0.0.1:8080 --operation operations/demo-2
//   node main.mjs --create http://127.0.0.1:8080 --collection projects/P/locations/L --topic projects/P/topics/T
//
// With --create it first creates the operation synchronously (POST /v1/operations, the
// committed Operation back, idempotent by request id) and then publishes the rest.
//
// Honours PUBSUB_EMULATOR_HOST (the client does). With --print-vector CASE it prints
// what encode() makes of a case of schemas/testdata/vectors.json instead.
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { PubSub } from '@google-cloud/pubsub';
import { createOperation, currentAttempt, post, publish } from './events.mjs';

const { values: args } = parseArgs({
  options: {
    topic: { type: 'string', default: process.env.TRACKER_TOPIC ?? '' },
    url: { type: 'string', default: '' },
    operation: { type: 'string', default: '' },
    outcome: { type: 'string', default: 'succeeded' },
    source: { type: 'string', default: '/examples/node' },
    attempt: { type: 'string', default: '0' },
    'exit-after': { type: 'string', default: '0' },
    create: { type: 'string', default: '' },
    collection: { type: 'string', default: '' },
    'request-id': { type: 'string', default: '' },
    'print-vector': { type: 'string' },
    vectors: { type: 'string', default: fileURLToPath(new URL('../../schemas/testdata/vectors.json', import.meta.url)) },
  },
});

// How events go out: over HTTP with --url, else to the Pub/Sub topic (which answers
// nothing: the answer is empty).
function sender(topicName, url) {
  if (url) {
    const token = process.env.TRACKER_TOKEN; // unset or empty: no Authorization header
    return { send: (event) => post(url, event, token), close: async () => {} };
  }
  const project = /^projects\/([^/]+)\/topics\/[^/]+$/.exec(topicName)?.[1];
  if (!project) throw new Error('need --topic projects/P/topics/T or --url URL');
  const pubsub = new PubSub({ projectId: project });
  const topic = pubsub.topic(topicName, { messageOrdering: true });
  return { send: async (event) => (await publish(topic, event), {}), close: () => pubsub.close() };
}

// --create URL: make the operation with that tracker synchronously and return its name:
// --operation when given, else one the tracker picks in --collection.
async function created({ create, collection, operation, 'request-id': requestId }) {
  const request = {
    collection,
    requestId: requestId || randomUUID(), // one per create, the same on every retry
    operation: { operationType: 'export', labels: { example: 'node' } },
  };
  if (operation) {
    const match = /^(?:(.*)\/)?operations\/(.+)$/.exec(operation);
    if (!match) throw new Error(`--operation ${operation}: want .../operations/ID`);
    [request.collection, request.operationId] = [match[1] ?? '', match[2]];
  }
  const { name } = await createOperation(create, request, process.env.TRACKER_TOKEN);
  console.log(`created ${name} (request id ${request.requestId})`);
  return name;
}

async function run({ topic, url, operation, outcome, source, attempt, 'exit-after': exitAfter, create }) {
  if (!operation) throw new Error('need --operation operations/NAME');
  const last = {
    succeeded: { response: { rows: 1200, uri: 'gs://example/export.csv' } },
    failed: { error: { code: 9, message: 'bucket example does not exist' } }, // FAILED_PRECONDITION
  }[outcome];
  if (!last) throw new Error(`--outcome ${outcome}: want succeeded or failed`);

  let current = Number(attempt);
  if (!current && url) {
    // A restart is the next attempt: read where the operation stands first.
    current = (await currentAttempt(url, operation, process.env.TRACKER_TOKEN)) + 1;
  }
  const { send, close } = sender(topic, url);
  const steps = [
    ['created', { operationType: 'export', labels: { example: 'node' } }],
    ['progress', { percent: 25, message: 'reading rows' }],
    ['progress', { percent: 75, message: 'writing file' }],
    [outcome, last],
  ];
  if (create) steps.shift(); // created already, with its type and labels
  try {
    for (const [i, [type, data]] of steps.entries()) {
      if (Number(exitAfter) && i === Number(exitAfter)) {
        console.log(`exiting after ${i} events`);
        return;
      }
      const answer = await send({
        type,
        source,
        id: randomUUID(), // new per event; keep it when you retry the same event
        subject: operation,
        time: new Date(),
        sequence: i + 1, // from 1 in every attempt
        attempt: current || undefined,
        data,
      });
      console.log(`published ${type} ${operation} (attempt ${current || 1}, sequence ${i + 1}) ${answer.outcome ?? ''}`);
      if (answer.state === 'cancelled' || answer.cancelRequested) {
        console.log(`cancelled: ${operation} stops`);
        return;
      }
    }
  } finally {
    await close();
  }
}

try {
  if (args['print-vector']) {
    const { printVector } = await import('./vector.mjs');
    printVector(args.vectors, args['print-vector']);
  } else {
    if (args.create) args.operation = await created(args);
    await run(args);
  }
} catch (err) {
  console.error(`producer: ${err.message}`);
  process.exitCode = 1;
}
