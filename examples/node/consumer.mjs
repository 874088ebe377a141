// Receive the tracker's done-notifications from a Pub/Sub subscription, decode each with
// the CloudEvents SDK (`cloudevents`), select them by operation type, labels and result,
// and act on each: print one JSON line (the event's attributes and the Operation) and
// run --on-success or --on-failure. The same flags, filter, actions and exit statuses as
// examples/go/consumer (its comment says them in full):
//
//   node consumer.mjs --subscription projects/P/subscriptions/S [selection] [actions] [--count 1] [--timeout 60]
//   node consumer.mjs --create-subscription projects/P/subscriptions/S --topic projects/P/topics/T \
//       [--operation-type export] [--label env=prod]... [--result failed|succeeded|cancelled|NOT_FOUND] \
//       [--on-success CMD] [--on-failure CMD]
//   node consumer.mjs --print-filter [selection]
//
// A notification is a CloudEvent in Pub/Sub binary mode (ce-* attributes, Content-Type,
// the data as it is), which is the shape of an HTTP binary-mode message, so HTTP.toEvent
// reads it. The data is the final google.longrunning.Operation as protobuf (decoded here
// with protobufjs, and its tracker.v1.OperationMetadata with it). Honours
// PUBSUB_EMULATOR_HOST (the client does). Node's Date keeps milliseconds: the event's
// time is ce-time to the millisecond.
import { spawn } from 'node:child_process';
import { parseArgs } from 'node:util';
import { PubSub } from '@google-cloud/pubsub';
import { HTTP } from 'cloudevents';
import protobuf from 'protobufjs';

// google.longrunning.Operation, google.rpc.Status and the fields of the tracker's
// tracker.v1.OperationMetadata a consumer selects on (schemas/proto/tracker/v1/operation.proto).
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
    tracker: {
      nested: {
        v1: {
          nested: {
            OperationMetadata: {
              fields: {
                operation_type: { type: 'string', id: 3 },
                labels: { keyType: 'string', type: 'string', id: 4 },
                parent: { type: 'string', id: 5 },
              },
            },
          },
        },
      },
    },
  },
});
types.addJSON(protobuf.common.get('google/protobuf/struct.proto').nested);
const Operation = types.lookupType('google.longrunning.Operation');
const OperationMetadata = types.lookupType('tracker.v1.OperationMetadata');
const Struct = types.lookupType('google.protobuf.Struct');
export const METADATA_TYPE_URL = 'type.googleapis.com/tracker.v1.OperationMetadata';
const STRUCT_TYPE_URL = 'type.googleapis.com/google.protobuf.Struct';

// google.rpc.Code names by number.
const CODES = [
  'OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND',
  'ALREADY_EXISTS', 'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION',
  'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED', 'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS',
  'UNAUTHENTICATED',
];
const RESULTS = new Set(['succeeded', 'failed', 'cancelled']);
export const MAX_FILTER_BYTES = 256; // the longest subscription filter Pub/Sub takes

/** A google.protobuf.Value as plain JSON (`kind` names the field of its oneof that is set). */
function jsonValue(value) {
  switch (value.kind) {
    case 'structValue':
      return structJson(value.structValue);
    case 'listValue':
      return (value.listValue.values ?? []).map(jsonValue);
    case 'stringValue':
    case 'numberValue':
    case 'boolValue':
      return value[value.kind];
    default: // nullValue, or nothing set
      return null;
  }
}

function structJson(struct) {
  return Object.fromEntries(Object.entries(struct.fields ?? {}).map(([k, v]) => [k, jsonValue(v)]));
}

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
  let result = 'succeeded';
  let errorCode = 'OK';
  if (op.error) {
    errorCode = CODES[op.error.code] ?? String(op.error.code);
    result = op.error.code === 1 ? 'cancelled' : 'failed';
  }
  const metadata = {};
  if (op.metadata?.type_url === METADATA_TYPE_URL) {
    const meta = OperationMetadata.decode(op.metadata.value);
    if (meta.operation_type) metadata.operationType = meta.operation_type;
    if (Object.keys(meta.labels).length) metadata.labels = { ...meta.labels };
    if (meta.parent) metadata.parent = meta.parent;
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
    result,
    errorCode,
    operation: {
      name: op.name,
      done: op.done,
      ...(op.error ? { error: { code: op.error.code, message: op.error.message } } : {}),
      ...(op.metadata ? { metadataTypeUrl: op.metadata.type_url } : {}),
      ...(op.response ? { responseTypeUrl: op.response.type_url } : {}),
      // The response as JSON when it is a google.protobuf.Struct.
      ...(op.response?.type_url === STRUCT_TYPE_URL
        ? { response: structJson(Struct.decode(op.response.value)) }
        : {}),
      metadata,
    },
  };
}

/** KEY=VALUE as { key, value }. */
export function parseLabel(text) {
  const at = text.indexOf('=');
  if (at < 1) throw new UsageError(`--label ${JSON.stringify(text)} is not KEY=VALUE`);
  return { key: text.slice(0, at), value: text.slice(at + 1) };
}

function checkResult(result) {
  if (result && !RESULTS.has(result) && !CODES.includes(result)) {
    throw new UsageError(
      `--result ${JSON.stringify(result)}: want succeeded, failed, cancelled or a google.rpc.Code name (NOT_FOUND, ...)`,
    );
  }
}

const equals = (attribute, value) =>
  `attributes.${attribute} = "${value.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;

/** The Pub/Sub filter on the done-notification attributes for a selection, '' for all. */
export function filterOf({ operationType, labels = [], result }) {
  const terms = [];
  if (operationType) terms.push(equals('operation_type', operationType));
  for (const { key, value } of labels) terms.push(equals(`label_${key.replace(/[^A-Za-z0-9_-]/g, '_')}`, value));
  if (RESULTS.has(result)) terms.push(equals('result', result));
  else if (result) terms.push(equals('error_code', result));
  const filter = terms.join(' AND ');
  const size = Buffer.byteLength(filter);
  if (size > MAX_FILTER_BYTES) {
    throw new UsageError(`the filter is ${size} bytes, Pub/Sub takes at most ${MAX_FILTER_BYTES}: ${filter}`);
  }
  return filter;
}

/** Why a decoded notification is outside the selection, or null when it is inside. */
export function mismatch({ operationType, labels = [], result }, note) {
  const meta = note.operation.metadata;
  if (operationType && meta.operationType !== operationType) {
    return `operation type ${JSON.stringify(meta.operationType ?? '')}`;
  }
  for (const { key, value } of labels) {
    const got = meta.labels?.[key];
    if (got !== value) return `label ${key}=${JSON.stringify(got ?? '')}`;
  }
  if (RESULTS.has(result) && note.result !== result) return `result ${note.result}`;
  if (result && !RESULTS.has(result) && note.errorCode !== result) return `error code ${note.errorCode}`;
  return null;
}

class UsageError extends Error {}

function projectOf(name, kind) {
  const project = new RegExp(`^projects/([^/]+)/${kind}/[^/]+$`).exec(name)?.[1];
  if (!project) throw new UsageError(`${JSON.stringify(name)} is not projects/P/${kind}/NAME`);
  return project;
}

/** Create the subscription with the selection's filter, or check the one there has it. */
async function ensureSubscription(pubsub, { subscription, topic, filter }) {
  try {
    await pubsub.topic(topic).createSubscription(subscription, { filter });
    return;
  } catch (error) {
    if (error.code !== 6) throw error; // ALREADY_EXISTS
  }
  const [there] = await pubsub.subscription(subscription).getMetadata();
  if (there.topic !== topic || there.filter !== filter) {
    throw new Error(
      `${subscription} exists on topic ${there.topic} with filter ${JSON.stringify(there.filter)}, ` +
        `not on ${topic} with ${JSON.stringify(filter)}`,
    );
  }
}

/** Run CMD with `sh -c`: the line on stdin, DONE_* in the environment; resolves on exit 0. */
function act(command, note, line) {
  if (!command) return Promise.resolve();
  const env = {
    ...process.env,
    DONE_ID: note.id,
    DONE_OPERATION: note.operation.name,
    DONE_RESULT: note.result,
    DONE_ERROR_CODE: note.errorCode,
    DONE_ERROR_MESSAGE: note.operation.error?.message ?? '',
    DONE_OPERATION_TYPE: note.operation.metadata.operationType ?? '',
    DONE_RESPONSE_TYPE: note.operation.responseTypeUrl ?? '',
    DONE_RESPONSE: note.operation.response ? JSON.stringify(note.operation.response) : '',
  };
  return new Promise((resolve, reject) => {
    const child = spawn('sh', ['-c', command], { env, stdio: ['pipe', process.stderr, process.stderr] });
    child.on('error', reject);
    child.on('exit', (code, signal) =>
      code === 0 ? resolve() : reject(new Error(`${JSON.stringify(command)}: exit ${code ?? signal}`)),
    );
    child.stdin.on('error', () => {}); // a command that does not read its stdin
    child.stdin.end(`${line}\n`);
  });
}

/** Receive until `count` notifications were acted on; whether one of them was a failure. */
async function run(options) {
  const { subscription, create, topic, selection, onSuccess, onFailure, count, timeout } = options;
  const pubsub = new PubSub({ projectId: projectOf(subscription, 'subscriptions') });
  try {
    if (create) await ensureSubscription(pubsub, { subscription, topic, filter: filterOf(selection) });
    const sub = pubsub.subscription(subscription);
    const seen = new Set();
    let failed = false;
    let queue = Promise.resolve(); // one message at a time: an action runs to its end first
    try {
      await new Promise((resolve, reject) => {
        const timer =
          timeout > 0
            ? setTimeout(
                () =>
                  count > 0
                    ? reject(new Error(`${seen.size} of ${count} notifications in ${timeout} s`))
                    : resolve(),
                timeout * 1000,
              )
            : null;
        const finish = (error) => (clearTimeout(timer), error ? reject(error) : resolve());
        for (const signal of ['SIGINT', 'SIGTERM']) process.once(signal, () => finish());
        sub.on('error', finish);
        const handle = async (message) => {
          let note;
          try {
            note = decode(message.attributes, message.data);
          } catch (error) {
            message.nack();
            finish(new Error(`message ${message.id}: ${error.message}`));
            return;
          }
          if (seen.has(note.id)) return message.ack();
          if (count > 0 && seen.size >= count) return message.nack(); // for whoever receives next
          const why = mismatch(selection, note);
          if (why) {
            process.stderr.write(`consumer: skipped ${note.id} ${note.subject}: ${why}\n`);
            return message.ack();
          }
          const line = JSON.stringify(note);
          try {
            await act(note.result === 'succeeded' ? onSuccess : onFailure, note, line);
          } catch (error) {
            process.stderr.write(`consumer: ${note.id} ${note.subject}: ${error.message}; nacked for redelivery\n`);
            return message.nack();
          }
          process.stdout.write(`${line}\n`);
          message.ack();
          seen.add(note.id);
          failed ||= note.result !== 'succeeded';
          if (count > 0 && seen.size >= count) finish();
        };
        sub.on('message', (message) => {
          queue = queue.then(() => handle(message));
        });
      });
      await queue;
    } finally {
      await sub.close();
    }
    return failed;
  } finally {
    await pubsub.close();
  }
}

function options(argv) {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      subscription: { type: 'string', default: '' },
      'create-subscription': { type: 'string', default: '' },
      topic: { type: 'string', default: '' },
      'operation-type': { type: 'string', default: '' },
      label: { type: 'string', multiple: true, default: [] },
      result: { type: 'string', default: '' },
      'on-success': { type: 'string', default: '' },
      'on-failure': { type: 'string', default: '' },
      count: { type: 'string', default: '1' },
      timeout: { type: 'string', default: '60' },
      'print-filter': { type: 'boolean', default: false },
    },
  });
  if (positionals.length) throw new UsageError(`unexpected arguments ${JSON.stringify(positionals)}`);
  const selection = {
    operationType: values['operation-type'],
    labels: values.label.map(parseLabel),
    result: values.result,
  };
  checkResult(selection.result);
  filterOf(selection);
  const count = Number(values.count);
  const timeout = Number(values.timeout);
  if (!Number.isInteger(count) || count < 0 || !Number.isInteger(timeout) || timeout < 0) {
    throw new UsageError('--count and --timeout must be whole numbers, 0 or more');
  }
  const out = {
    printFilter: values['print-filter'],
    selection,
    topic: values.topic,
    onSuccess: values['on-success'],
    onFailure: values['on-failure'],
    count,
    timeout,
  };
  if (out.printFilter) return out;
  const create = values['create-subscription'];
  if (values.subscription && create) throw new UsageError('give --subscription or --create-subscription, not both');
  if (create) {
    try {
      projectOf(values.topic, 'topics');
    } catch (error) {
      throw new UsageError(`--create-subscription needs --topic: ${error.message}`);
    }
  } else if (values.subscription) {
    if (values.topic) throw new UsageError('--topic goes with --create-subscription');
  } else {
    throw new UsageError('give --subscription or --create-subscription projects/P/subscriptions/S');
  }
  out.subscription = create || values.subscription;
  out.create = Boolean(create);
  projectOf(out.subscription, 'subscriptions');
  return out;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  let parsed;
  try {
    parsed = options(process.argv.slice(2));
  } catch (error) {
    console.error(`consumer: ${error.message}`);
    process.exit(2);
  }
  if (parsed.printFilter) {
    console.log(filterOf(parsed.selection));
    process.exit(0);
  }
  run(parsed)
    .then((failed) => process.exit(failed ? 3 : 0))
    .catch((error) => {
      console.error(`consumer: ${error.message}`);
      process.exit(1);
    });
}
