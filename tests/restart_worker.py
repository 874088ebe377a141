"""A worker process for the restart test: `tracker.worker` over HTTP, in lock step.

    python -m tests.restart_worker URL NAME CHUNKS PROCESSED_FILE

It works through chunks 0..CHUNKS-1 from the checkpoint the tracker holds (the next
chunk's index): for each, it appends the chunk's index to PROCESSED_FILE (the work),
reports progress, then checkpoints; at the end it succeeds with {"chunks": CHUNKS}.
Before each step it prints `gate <step> <chunk>` and waits for a line on stdin, so the
test decides where a SIGKILL lands; after entering the run it prints
`run attempt=<n> from=<chunk>`.
"""

from __future__ import annotations

import sys

from tracker.worker import Worker


def gate(step: str, chunk: int | str = "-") -> None:
    print(f"gate {step} {chunk}", flush=True)
    if not sys.stdin.readline():
        raise SystemExit("stdin closed")


def main() -> None:
    url, name, count, processed = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    with Worker.http(url) as worker, worker.operation(name, operation_type="chunks") as op:
        start = int(op.checkpoint_data or b"0")
        print(f"run attempt={op.attempt} from={start}", flush=True)
        for chunk in range(start, count):
            gate("process", chunk)
            with open(processed, "a", encoding="ascii") as out:
                out.write(f"{chunk}\n")
            gate("progress", chunk)
            op.progress(100 * (chunk + 1) / count, f"chunk {chunk + 1}/{count}")
            gate("checkpoint", chunk)
            op.checkpoint(str(chunk + 1).encode())
        gate("succeed")
        op.succeed({"chunks": count})
    print("done", flush=True)


if __name__ == "__main__":
    main()
