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
 * sequence: per-operation counter 1, 2, 3, ... (number, BigInt or decimal string); omitted: none
 * data: the kind's message in proto3 JSON (lowerCamelCase fields, bytes in base64);
 *   omitted: no data (the empty message)
 * extensions: optional further attributes, e.g. { traceparent: '00-...' }
 */
export function encode({ type, source, id, subject, time, sequence, data, extensions = {} }) {
  const attributes = {
    'ce-specversion': '1.0',
    'ce-type': `tracker.operation.v1.${type}`,
    'ce-source': source,
    'ce-id': id,
    'ce-subject': subject,
  };
  if (time != null) attributes['ce-time'] = new Date(time).toISOString();
  if (sequence != null) attributes['ce-sequence'] = String(sequence);
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
  return JSON.parse(answer);
}
