// Receive the tracker's done-notifications from a Pub/Sub subscription and decode each
// with the CloudEvents SDK (`cloudevents`): a notification is a CloudEvent in Pub/Sub
// binary mode (ce-* attributes, Content-Type, the data as it is), which is the shape of
// an HTTP binary-mode message, so HTTP.toEvent reads it. The data is the final
// google.longrunning.Operation as protobuf (decoded here with protobufjs). Each is
// printed as one JSON line: the event's attributes and the Operation.
//
//   node consumer.mjs --subscription projects/P/subscriptions/S [--count 1] [--timeout 60]
//
// Honours PUBSUB_EMULATOR_HOST (the client does). A notification redelivered (the same
// ce-id) is acknowledged and not printed again. Node's Date keeps milliseconds: the
// event's time is ce-time to the millisecond.
import { parseArgs } from 'node:util';
import { PubSub } from '@google-cloud/pubsub';
import { HTTP } from 'cloudevents';
import protobuf from 'protobufjs';

// google.longrunning.Operation and google.rpc.Status, the fields a consumer reads.
const types = protobuf.Root.fromJSON({
  nested: {
    google: {
      nested: {
        protobuf: { nested: { Any: { fields: { type_url: { type: 'string', id: 1 }, value: { type: 'bytes', id: 2 } } } } },
        rpc: { nested: { Status: { fields: { code: { type: 'int32', id: 1 }, message: { type: 'string', id: 2 } } } } },
        longrunning: {
          nested: {
            Operation: {
              fields: {
                name: { type: 'string', id: 1 },
                metadata: { type: 'google.protobuf.Any', id: 2 },
                done: { type: 'bool', id: 3 },
                error: { type: 'google.rpc.Status', id: 4 },
                response: { type: 'google.protobuf.Any', id: 5 },
              },
            },
          },
        },
      },
    },
  },
});
const Operation = types.lookupType('google.longrunning.Operation');

/** A received message as a CloudEvent (validated) and the Operation in its data. */
export function decode(attributes, data) {
  const event = HTTP.toEvent({ headers: attributes, body: data });
  event.validate(); // throws a ValidationError for anything that is not a CloudEvent 1.0
  const op = Operation.decode(event.data);
  const extensions = {};
  const known = new Set([
    'specversion', 'type', 'id', 'source', 'subject', 'time', 'datacontenttype', 'dataschema',
    'data', 'data_base64', 'datacontentencoding', 'schemaurl', // the last two: CloudEvents 0.3
  ]);
  for (const [key, value] of Object.entries(event)) {
    if (!known.has(key) && value !== undefined) extensions[key] = String(value);
  }
  return {
    specversion: event.specversion,
    type: event.type,
    id: event.id,
    source: event.source,
    subject: event.subject,
    time: event.time,
    datacontenttype: event.datacontenttype,
    dataschema: event.dataschema,
    extensions,
    operation: {
      name: op.name,
      done: op.done,
      ...(op.error ? { error: { code: op.error.code, message: op.error.message } } : {}),
      ...(op.metadata ? { metadataTypeUrl: op.metadata.type_url } : {}),
      ...(op.response ? { responseTypeUrl: op.response.type_url } : {}),
    },
  };
}

async function run({ subscription, count, timeout }) {
  const project = /^projects\/([^/]+)\/subscriptions\/[^/]+$/.exec(subscription)?.[1];
  if (!project) throw new Error('need --subscription projects/P/subscriptions/S');
  const pubsub = new PubSub({ projectId: project });
  const sub = pubsub.subscription(subscription);
  const seen = new Set();
  try {
    await new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${seen.size} of ${count} notifications in ${timeout} s`)),
        timeout * 1000,
      );
      const finish = (error) => (clearTimeout(timer), error ? reject(error) : resolve());
      sub.on('error', finish);
      sub.on('message', (message) => {
        let note;
        try {
          note = decode(message.attributes, message.data);
        } catch (error) {
          message.nack();
          finish(new Error(`message ${message.id}: ${error.message}`));
          return;
        }
        message.ack();
        if (seen.has(note.id) || seen.size >= count) return;
        seen.add(note.id);
        process.stdout.write(`${JSON.stringify(note)}\n`);
        if (seen.size >= count) finish();
      });
    });
  } finally {
    await sub.close();
    await pubsub.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      subscription: { type: 'string', default: '' },
      count: { type: 'string', default: '1' },
      timeout: { type: 'string', default: '60' },
    },
  });
  run({ subscription: values.subscription, count: Number(values.count), timeout: Number(values.timeout) })
    .then(() => process.exit(0))
    .catch((error) => {
      console.error(`consumer: ${error.message}`);
      process.exit(1);
    });
}
