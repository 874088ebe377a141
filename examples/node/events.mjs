// The part to copy: encode(), and publish() (Pub/Sub) or post() (HTTP). The contract is
// schemas/README.md; docs/publishing.md explains each attribute.

/**
 * The attributes and data of one tracker event in CloudEvents binary content mode.
 * The attribute names are the same as Pub/Sub attributes and as HTTP headers.
 *
 * type: created, progress, checkpoint, heartbeat, succeeded, failed or cancelled
 * source: this producer, a URI-reference such as /workers/export
 * id: unique per source and operation; a retry of the same event reuses it
 * subject: the operation name, operations/...
 * time: a Date (or RFC 3339 string) when it happened; omitted: none is sent
 * sequence: per-operation counter 1, 2, 3, ... within the attempt (number, BigInt or decimal
 *   string); omitted: none
 * attempt: the run of the work: 1, then the previous run's + 1 after a restart (its sequence
 *   starts from 1 again); omitted: none (read as 1)
 * data: the kind's message in proto3 JSON (lowerCamelCase fields, bytes in base64);
 *   omitted: no data (the empty message)
 * extensions: optional further attributes, e.g. { traceparent: '00-...' }
 */
export function encode({ type, source, id, subject, time, sequence, attempt, data, extensions = {} }) {
  const attributes = {
    'ce-specversion': '1.0',
    'ce-type': `tracker.operation.v1.${type}`,
    'ce-source': source,
    'ce-id': id,
    'ce-subject': subject,
  };
  if (time != null) attributes['ce-time'] = new Date(time).toISOString();
  if (sequence != null) attributes['ce-sequence'] = String(sequence);
  if (attempt != null) attributes['ce-attempt'] = String(attempt);
  for (const [name, value] of Object.entries(extensions)) attributes[`ce-${name}`] = String(value);
  if (data == null) return { attributes, body: Buffer.alloc(0) };
  attributes['content-type'] = 'application/json';
  return { attributes, body: Buffer.from(JSON.stringify(data)) };
}

/**
 * Publish one event and wait until Pub/Sub has it. The operation name is the ordering
 * key: get the topic with pubsub.topic(name, { messageOrdering: true }).
 */
export async function publish(topic, event) {
  const { attributes, body } = encode(event);
  return topic.publishMessage({ data: body, attributes, orderingKey: event.subject });
}

/**
 * Post one event to the tracker's POST /v1/events in HTTP binary mode: the attributes
 * as headers, the data as the body. A token goes as `Authorization: Bearer`, which a
 * tracker that checks its callers needs (a 401 answer says it is missing).
 *
 * Returns the tracker's answer for the event: { outcome, state, attempt, cancelRequested }.
 * Stop the work when state is 'cancelled' or cancelRequested is true (CancelOperation).
 */
export async function post(url, event, token) {
  const { attributes, body } = encode(event);
  const headers = { ...attributes };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(`${url.replace(/\/+$/, '')}/v1/events`, {
    method: 'POST',
    headers,
    body,
    signal: AbortSignal.timeout(10_000),
  });
  const answer = await response.text();
  if (!response.ok) throw new Error(`tracker answered ${response.status}: ${answer.trim()}`);
  return JSON.parse(answer).results[0];
}

/**
 * The operation's current attempt (GET /v1/{name}, which needs operations.read), 0 when
 * it does not exist yet or cannot be read. A
 * worker starts with attempt 1 then, else with this + 1, numbering its events from 1
 * again: the tracker orders them after the previous run's.
 */
export async function currentAttempt(url, name, token) {
  const headers = token ? { authorization: `Bearer ${token}` } : {};
  const response = await fetch(`${url.replace(/\/+$/, '')}/v1/${name}`, {
    headers,
    signal: AbortSignal.timeout(10_000),
  });
  if (response.status === 404) return 0;
  if (response.status === 401 || response.status === 403) {
    // No operations.read: a restart cannot be told from a first run. Say so, go on.
    console.error(`cannot read ${name} (${response.status}): publishing as attempt 1`);
    return 0;
  }
  const text = await response.text();
  if (!response.ok) throw new Error(`tracker answered ${response.status}: ${text.trim()}`);
  return Math.max(Number(JSON.parse(text).metadata?.attempt ?? 1), 1); // an int64: a string
}

/**
 * Create the operation now (POST /v1/{collection}/operations, tracker.v1.Operations
 * CreateOperation; docs/api.md "Creating an operation") and return the Operation once
 * the tracker has committed it: what an API method hands its caller before the work's
 * events follow, over Pub/Sub or HTTP. `collection` is '' or projects/P[/locations/L];
 * `operationId` '' lets the tracker name it. A failed call is retried with the same
 * `requestId`, which answers the same operation (AIP-155).
 */
export async function createOperation(url, { collection = '', operationId = '', requestId, operation }, token) {
  const base = url.replace(/\/+$/, '');
  const endpoint = collection ? `${base}/v1/${collection.replace(/^\/+|\/+$/g, '')}/operations` : `${base}/v1/operations`;
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const body = JSON.stringify({ requestId, operation, ...(operationId ? { operationId } : {}) });
  let last;
  for (let attempt = 0; attempt < 3; attempt++) {
    if (attempt) await new Promise((resolve) => setTimeout(resolve, 500 * attempt));
    let response;
    try {
      response = await fetch(endpoint, { method: 'POST', headers, body, signal: AbortSignal.timeout(10_000) });
    } catch (err) {
      last = err; // it may have been created: the same request id finds it
      continue;
    }
    const text = await response.text();
    if (response.status >= 500) {
      last = new Error(`tracker answered ${response.status}: ${text.trim()}`);
      continue;
    }
    if (!response.ok) throw new Error(`tracker answered ${response.status}: ${text.trim()}`);
    return JSON.parse(text);
  }
  throw last;
}
