#!/usr/bin/env bash
# Publish the life of one operation to the tracker's POST /v1/events with nothing but curl:
# created -> progress 25% -> progress 75% -> succeeded (or failed), CloudEvents in HTTP
# binary content mode (attributes in ce-* headers, the data as the JSON body).
#
#   examples/curl/publish.sh http://127.0.0.1:8080 operations/demo-1 [succeeded|failed]
#   TRACKER_TOKEN=... examples/curl/publish.sh ...     # a tracker that checks callers
#
# Source it to use publish_event alone: `source examples/curl/publish.sh`.

SOURCE="${SOURCE:-/examples/curl}"  # ce-source: this producer

# publish_event URL TYPE OPERATION ID SEQUENCE TIME DATA [CURL-ARGS...]
# One event. An empty SEQUENCE, TIME or DATA is not sent. Further arguments go to curl,
# e.g. -H 'ce-traceparent: 00-...' for an extension attribute. With TRACKER_TOKEN set,
# it goes as "Authorization: Bearer", read by curl from stdin so that no process
# listing shows it.
publish_event() {
  local headers=(
    -H 'ce-specversion: 1.0'
    -H "ce-type: tracker.operation.v1.$2"
    -H "ce-source: $SOURCE"
    -H "ce-subject: $3"
    -H "ce-id: $4"
  )
  [[ -z "$5" ]] || headers+=(-H "ce-sequence: $5")
  [[ -z "$6" ]] || headers+=(-H "ce-time: $6")
  if [[ -n "$7" ]]; then
    headers+=(-H 'content-type: application/json')
  else
    headers+=(-H 'content-type:')  # no data: drop the form content type curl would add
  fi
  local auth=()
  [[ -z "${TRACKER_TOKEN:-}" ]] || auth=(-H @-)
  curl -sS --fail-with-body --max-time 10 "${headers[@]}" "${auth[@]}" --data-binary "$7" \
    "${@:8}" "$1/v1/events" <<<"authorization: Bearer ${TRACKER_TOKEN:-}" || return
  echo
}

main() {
  if [[ $# -lt 2 || $# -gt 3 ]]; then
    echo "usage: $0 TRACKER_URL OPERATION [succeeded|failed]" >&2
    exit 2
  fi
  local url="$1" operation="$2" outcome="${3:-succeeded}" last
  case "$outcome" in
    succeeded) last='{"response": {"rows": 1200, "uri": "gs://example/export.csv"}}' ;;
    failed) last='{"error": {"code": 9, "message": "bucket example does not exist"}}' ;;  # FAILED_PRECONDITION
    *) echo "$0: outcome $outcome: want succeeded or failed" >&2; exit 2 ;;
  esac
  local run rfc3339='+%Y-%m-%dT%H:%M:%SZ'
  run="$(date -u +%Y%m%d%H%M%S)-$$-$RANDOM"  # event ids: new per event, kept on a retry

  publish_event "$url" created "$operation" "$run-1" 1 "$(date -u "$rfc3339")" \
    '{"operationType": "export", "labels": {"example": "curl"}}'
  publish_event "$url" progress "$operation" "$run-2" 2 "$(date -u "$rfc3339")" \
    '{"percent": 25, "message": "reading rows"}'
  publish_event "$url" progress "$operation" "$run-3" 3 "$(date -u "$rfc3339")" \
    '{"percent": 75, "message": "writing file"}'
  publish_event "$url" "$outcome" "$operation" "$run-4" 4 "$(date -u "$rfc3339")" "$last"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  main "$@"
fi
