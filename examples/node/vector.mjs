// --print-vector: encode one case of schemas/testdata/vectors.json with encode(), so a
// test can compare the result with the case's bytes.
import { readFileSync } from 'node:fs';
import { encode } from './events.mjs';

const CORE = new Set(['specversion', 'type', 'source', 'id', 'subject', 'time', 'sequence', 'attempt', 'datacontenttype']);

export function printVector(path, name) {
  // Sequence numbers go up to 2^63-1: keep them as strings (a JS number would round them).
  const text = readFileSync(path, 'utf8').replace(/"sequence":\s*(\d+)/g, '"sequence": "$1"');
  const found = JSON.parse(text).cases.find((c) => c.name === name);
  if (!found) throw new Error(`no case ${JSON.stringify(name)} in ${path}`);
  if (!found.valid) throw new Error(`case ${name} is not a valid event`);
  const x = found.expected;
  // Extension attributes are part of the input, as a producer would set them.
  const extensions = {};
  if (found.mode.includes('structured')) {
    for (const [key, value] of Object.entries(JSON.parse(found.body))) {
      if (!CORE.has(key) && !['data', 'data_base64', 'dataschema'].includes(key)) extensions[key] = value;
    }
  } else {
    for (const [key, value] of Object.entries({ ...found.headers, ...found.attributes })) {
      if (key.startsWith('ce-') && !CORE.has(key.slice(3))) extensions[key.slice(3)] = value;
    }
  }
  const { attributes, body } = encode({
    type: x.type.replace(/^tracker\.operation\.v1\./, ''),
    source: x.source,
    id: x.id,
    subject: x.subject,
    time: x.time ?? undefined,
    sequence: x.sequence ?? undefined,
    attempt: x.attempt ?? undefined,
    // The empty message is sent as no data at all.
    data: Object.keys(x.data ?? {}).length ? x.data : undefined,
    extensions,
  });
  console.log(JSON.stringify({ attributes, body: body.toString('utf8') }));
}
