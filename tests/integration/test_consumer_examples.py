"""The done-notification consumers (examples/go/consumer, examples/node/consumer.mjs), run
for real: selections, filtered subscriptions and the actions per outcome.

End to end, on each Pub/Sub server of the session: Go and Node consumers, each with
`--create-subscription` and a selection (operation type, labels, result or error code),
start before a real tracker with `--done-topic` ends six operations of different types,
labels and outcomes. Each consumer must have created its subscription with the filter
its flags make, act on exactly the operations its selection names (once each), run
`--on-success` for the succeeded ones and `--on-failure` for the failed and cancelled
ones (with the DONE_* environment and the notification on stdin), print the decoded
Operation (metadata, response JSON, error) and exit 3 when it acted on a failure, 0
otherwise. Where the server applies filters (pstest) nothing outside the selection
reaches a consumer; where it does not (Google's emulator, `pubsub_kit.applies_filters`)
the consumer's own check skips it (tests/README.md, the gaps table).

Also: the consumer's own check on an unfiltered subscription, a failing action nacked
and run again on redelivery, `--create-subscription` on an existing subscription (its
filter the same: used; another: refused), `--print-filter` for the recipes in
examples/README.md, and bad flags refused with exit status 2.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from google.longrunning import operations_pb2
from google.protobuf import any_pb2
from google.rpc import code_pb2, status_pb2

from tests.helpers import ROOT, T0, ingest, make_event, packed_struct
from tests.integration.test_examples import (
    BUILD_TIMEOUT_S,
    NODE_DIR,
    build_go_consumer,
    install_node,
)
from tests.pubsub_kit import PROJECT, PubSub, matches
from tracker.bindings import done_attributes, ordering_key
from tracker.config import Config
from tracker.events import Kind
from tracker.server import running
from tracker.v1 import operation_pb2

pytestmark = pytest.mark.timeout(BUILD_TIMEOUT_S + 180)  # the first test may wait for a build

LANGUAGES = ["go", "node"]
RUN_TIMEOUT_S = 120
STRUCT = "type.googleapis.com/google.protobuf.Struct"
METADATA = "type.googleapis.com/tracker.v1.OperationMetadata"


def consumer(language: str) -> list[str]:
    """The consumer's command (both take the same `--flags`: Go's flag package reads `--`)."""
    if language == "go":
        return [str(build_go_consumer())]
    return [install_node(), str(NODE_DIR / "consumer.mjs")]


_names = itertools.count()


def subscription_name(what: str) -> str:
    return f"projects/{PROJECT}/subscriptions/{PubSub.prefix}consumer-{what}-{next(_names)}"


# ---- the operations and the selections ------------------------------------------------------


@dataclass(frozen=True)
class Op:
    type: str
    labels: dict[str, str]
    outcome: str  # succeeded, cancelled, or a google.rpc.Code name


OPS = {
    "operations/c-export-prod-ok": Op("export", {"env": "prod"}, "succeeded"),
    "operations/c-export-prod-gone": Op("export", {"env": "prod"}, "NOT_FOUND"),
    "operations/c-export-dev-gone": Op("export", {"env": "dev"}, "NOT_FOUND"),
    "operations/c-import-prod-ok": Op("import", {"env": "prod", "team.name": "data"}, "succeeded"),
    "operations/c-export-prod-stopped": Op("export", {"env": "prod"}, "cancelled"),
    "operations/c-import-dev-denied": Op("import", {"env": "dev"}, "PERMISSION_DENIED"),
}


def rows(name: str) -> int:
    """The response of a succeeded operation: a Struct {"rows": rows(name)}."""
    return len(name)


def message(name: str) -> str:
    return f"{name} went wrong"


@dataclass(frozen=True)
class Selection:
    flags: list[str]
    filter: str
    selects: frozenset[str]


SELECTIONS = {
    "prod-export-failures": Selection(
        ["--operation-type", "export", "--label", "env=prod", "--result", "failed"],
        'attributes.operation_type = "export" AND attributes.label_env = "prod"'
        ' AND attributes.result = "failed"',
        frozenset({"operations/c-export-prod-gone"}),
    ),
    "prod": Selection(
        ["--label", "env=prod"],
        'attributes.label_env = "prod"',
        frozenset(
            {
                "operations/c-export-prod-ok",
                "operations/c-export-prod-gone",
                "operations/c-import-prod-ok",
                "operations/c-export-prod-stopped",
            }
        ),
    ),
    "not-found": Selection(
        ["--result", "NOT_FOUND"],
        'attributes.error_code = "NOT_FOUND"',
        frozenset({"operations/c-export-prod-gone", "operations/c-export-dev-gone"}),
    ),
    "data-imports": Selection(
        ["--operation-type", "import", "--label", "team.name=data", "--result", "succeeded"],
        'attributes.operation_type = "import" AND attributes.label_team_name = "data"'
        ' AND attributes.result = "succeeded"',
        frozenset({"operations/c-import-prod-ok"}),
    ),
}

# What each action writes: one line per notification, then the notification it read.
ON_SUCCESS = (
    'printf "succeeded %s %s %s\\n" "$DONE_OPERATION" "$DONE_RESPONSE_TYPE" "$DONE_RESPONSE"'
)
ON_FAILURE = (
    'printf "%s %s %s %s %s\\n" "$DONE_RESULT" "$DONE_OPERATION" "$DONE_OPERATION_TYPE"'
    ' "$DONE_ERROR_CODE" "$DONE_ERROR_MESSAGE"'
)


def action(command: str, out: Path) -> str:
    """`command`'s line and the notification from stdin, appended to `out`, plus DONE_ID."""
    q = shlex.quote(str(out))
    return f'{{ {command}; echo "id $DONE_ID"; cat; }} >> {q}'


def finish(name: str, op: Op) -> list[Any]:
    created = make_event(Kind.CREATED, name, data={"operation_type": op.type, "labels": op.labels})
    if op.outcome == "succeeded":
        return [
            created,
            make_event(Kind.SUCCEEDED, name, data={"response": packed_struct(rows=rows(name))}),
        ]
    if op.outcome == "cancelled":
        return [created, make_event(Kind.CANCELLED, name)]
    error = status_pb2.Status(code=code_pb2.Code.Value(op.outcome), message=message(name))
    return [created, make_event(Kind.FAILED, name, data={"error": error})]


# ---- running consumers ---------------------------------------------------------------------


@dataclass
class Run:
    """One consumer process and what it left."""

    language: str
    selection: str
    subscription: str
    actions: Path
    proc: subprocess.Popen[str]
    stdout: str = ""
    stderr: str = ""
    returncode: int | None = None
    lines: list[dict[str, Any]] = field(default_factory=list)

    def wait(self) -> None:
        try:
            self.stdout, self.stderr = self.proc.communicate(timeout=RUN_TIMEOUT_S + 30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.communicate()
        self.returncode = self.proc.returncode
        self.lines = [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    @property
    def why(self) -> str:
        return f"{self.language} {self.selection} exit {self.returncode}\nstderr:\n{self.stderr}"

    def skipped(self) -> list[str]:
        """The operations it reported skipping (`consumer: skipped ID NAME: why`)."""
        return re.findall(r"^consumer: skipped \S+ (\S+): ", self.stderr, re.M)


def start(
    language: str,
    args: list[str],
    *,
    pubsub_env: str,
    what: str = "",
    subscription: str = "",
    actions: Path | None = None,
) -> Run:
    proc = subprocess.Popen(
        [*consumer(language), *args],
        env={**os.environ, "PUBSUB_EMULATOR_HOST": pubsub_env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return Run(language, what, subscription, actions or Path(os.devnull), proc)


def wait_for_subscription(pubsub: PubSub, run: Run) -> Any:
    """The subscription the consumer creates, once it is there."""
    deadline = time.monotonic() + 60
    while True:
        try:
            return pubsub.subscriber.get_subscription(subscription=run.subscription)
        except Exception:  # NotFound until the consumer has made it
            if run.proc.poll() is not None:
                run.wait()
                pytest.fail(f"the consumer ended before creating its subscription: {run.why}")
            assert time.monotonic() < deadline, f"no {run.subscription} after 60 s"
            time.sleep(0.2)


def action_records(path: Path) -> dict[str, list[str]]:
    """The action file as {operation: [the action's line, its DONE_ID, its stdin]}."""
    records: dict[str, list[str]] = {}
    lines = path.read_text().splitlines() if path.exists() else []
    for head, id_line, stdin in zip(lines[::3], lines[1::3], lines[2::3], strict=True):
        name = head.split(" ", 2)[1]
        assert name not in records, f"{name} acted on twice: {lines}"
        records[name] = [head, id_line, stdin]
    return records


# ---- end to end ----------------------------------------------------------------------------


@pytest.fixture
def pubsub(pubsub_env: str) -> PubSub:
    return PubSub()


def test_consumers_act_on_exactly_what_their_selection_names(
    pubsub: PubSub, pubsub_env: str, tmp_path: Path
) -> None:
    topic = pubsub.topic()
    raw = pubsub.subscription(topic)  # every notification, as published
    runs: list[Run] = []
    for language in LANGUAGES:
        for what, selection in SELECTIONS.items():
            sub = subscription_name(f"{language}-{what}")
            actions = tmp_path / f"{language}-{what}.actions"
            args = [
                "--create-subscription", sub, "--topic", topic, *selection.flags,
                "--on-success", action(ON_SUCCESS, actions),
                "--on-failure", action(ON_FAILURE, actions),
                "--count", str(len(selection.selects)), "--timeout", str(RUN_TIMEOUT_S),
            ]  # fmt: skip
            runs.append(
                start(
                    language,
                    args,
                    pubsub_env=pubsub_env,
                    what=what,
                    subscription=sub,
                    actions=actions,
                )
            )
    try:
        for run in runs:  # each made its subscription on the topic, with its filter
            made = wait_for_subscription(pubsub, run)
            assert (made.topic, made.filter) == (topic, SELECTIONS[run.selection].filter)
        config = Config(db=str(tmp_path / "c.db"), http_port=0, grpc_port=-1, done_topic=topic)
        with running(config) as server:
            ingest(server, [e for name, op in OPS.items() for e in finish(name, op)])
            loop: asyncio.AbstractEventLoop = server.loop  # type: ignore[attr-defined]
            asyncio.run_coroutine_threadsafe(server.tracker.dispatcher.drain(), loop).result(30)
            assert server.store.outbox_pending() == []
    finally:
        for run in runs:
            run.wait()

    published = pubsub.pull_all(raw)
    assert sorted(m.attributes["operation"] for m in published) == sorted(OPS)
    filtering = pubsub.applies_filters()
    for run in runs:
        selection = SELECTIONS[run.selection]
        # The filter selects on the tracker's real attributes what the selection names.
        assert {
            m.attributes["operation"] for m in published if matches(selection.filter, m.attributes)
        } == selection.selects
        failures = {n for n in selection.selects if OPS[n].outcome != "succeeded"}
        assert run.returncode == (3 if failures else 0), run.why
        assert sorted(line["subject"] for line in run.lines) == sorted(selection.selects), run.why
        skipped = run.skipped()
        if filtering:
            assert skipped == [], run.why  # the server kept the rest away
        else:  # every notification reached it; its own check held the others back
            assert set(skipped) <= set(OPS) - selection.selects, run.why
        for line in run.lines:
            check_line(line)
        records = action_records(run.actions)
        assert sorted(records) == sorted(selection.selects), run.why
        for name, (head, id_line, stdin) in records.items():
            check_action(name, head)
            line = next(x for x in run.lines if x["subject"] == name)
            assert id_line == f"id {line['id']}"
            assert json.loads(stdin) == line  # the notification it was run for, on stdin
    for run in runs:
        if filtering:  # nothing left behind in the subscription
            assert pubsub.pull_all(run.subscription) == [], run.why


def check_line(line: dict[str, Any]) -> None:
    """A printed notification: the decoded Operation, its metadata, result and error."""
    name = line["subject"]
    op = OPS[name]
    operation = line["operation"]
    assert operation["name"] == name and operation["done"] is True
    assert operation["metadataTypeUrl"] == METADATA
    assert operation["metadata"]["operationType"] == op.type
    assert operation["metadata"]["labels"] == op.labels
    assert "parent" not in operation["metadata"]
    if op.outcome == "succeeded":
        assert (line["result"], line["errorCode"]) == ("succeeded", "OK")
        assert "error" not in operation
        assert operation["responseTypeUrl"] == STRUCT
        assert operation["response"] == {"rows": rows(name)}
    elif op.outcome == "cancelled":
        assert (line["result"], line["errorCode"]) == ("cancelled", "CANCELLED")
        assert operation["error"]["code"] == code_pb2.CANCELLED
    else:
        assert (line["result"], line["errorCode"]) == ("failed", op.outcome)
        assert operation["error"] == {
            "code": code_pb2.Code.Value(op.outcome),
            "message": message(name),
        }
        assert "response" not in operation


def check_action(name: str, head: str) -> None:
    """The action that ran for `name` is the one for its outcome, with its DONE_* values."""
    op = OPS[name]
    if op.outcome == "succeeded":
        word, got, type_url, response = head.split(" ", 3)
        assert (word, got, type_url) == ("succeeded", name, STRUCT)
        assert json.loads(response) == {"rows": rows(name)}
        return
    word, got, op_type, code, text = head.split(" ", 4)
    if op.outcome == "cancelled":
        assert (word, got, op_type, code) == ("cancelled", name, op.type, "CANCELLED")
    else:
        assert (word, got, op_type, code, text) == (
            "failed",
            name,
            op.type,
            op.outcome,
            message(name),
        )


# ---- one notification at a time ------------------------------------------------------------


def notification(
    name: str, op_type: str, *, error: int = code_pb2.OK
) -> tuple[bytes, dict[str, str]]:
    """A done-notification as the tracker publishes it (`tracker.bindings`), by hand."""
    meta = operation_pb2.OperationMetadata(operation_type=op_type, labels={"env": "prod"})
    meta.end_time.FromDatetime(T0)
    packed = any_pb2.Any()
    packed.Pack(meta)
    operation = operations_pb2.Operation(name=name, done=True, metadata=packed)
    if error:
        operation.error.CopyFrom(status_pb2.Status(code=error, message="no"))
    else:
        operation.response.CopyFrom(packed_struct(rows=1))
    return operation.SerializeToString(), done_attributes(f"id-{name}", operation)


def publish(pubsub: PubSub, topic: str, name: str, op_type: str, **kw: int) -> None:
    data, attributes = notification(name, op_type, **kw)
    op = operations_pb2.Operation.FromString(data)
    pubsub.publisher.publish(topic, data, ordering_key=ordering_key(op), **attributes).result(10)


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_consumer_checks_its_selection_on_an_unfiltered_subscription(
    language: str, pubsub: PubSub, pubsub_env: str
) -> None:
    """With `--subscription` the selection is the consumer's alone: an import before the
    export (one ordering key, an ordered subscription) is acknowledged and skipped."""
    topic = pubsub.topic()
    sub = pubsub.subscription(topic)
    name = f"operations/one-{language}"
    publish(pubsub, topic, name, "import")
    publish(pubsub, topic, name, "export")
    args = ["--subscription", sub, "--operation-type", "export", "--timeout", "60"]
    run = start(language, args, pubsub_env=pubsub_env)
    run.wait()
    assert run.returncode == 0, run.why
    assert [(x["subject"], x["operation"]["metadata"]["operationType"]) for x in run.lines] == [
        (name, "export")
    ]
    assert f'consumer: skipped id-{name} {name}: operation type "import"' in run.stderr


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_failing_action_is_nacked_and_runs_again_on_redelivery(
    language: str, pubsub: PubSub, pubsub_env: str, tmp_path: Path
) -> None:
    topic = pubsub.topic()
    sub = pubsub.subscription(topic, ordered=False)
    name = f"operations/retry-{language}"
    publish(pubsub, topic, name, "export", error=code_pb2.DATA_LOSS)
    mark, out = tmp_path / "tried", tmp_path / "ran"
    on_failure = f'test -e {mark} || {{ touch {mark}; exit 7; }}; echo "$DONE_ERROR_CODE" >> {out}'
    args = ["--subscription", sub, "--on-failure", on_failure, "--timeout", "90"]
    run = start(language, args, pubsub_env=pubsub_env)
    run.wait()
    assert run.returncode == 3, run.why  # the one notification acted on was a failure
    assert out.read_text() == "DATA_LOSS\n"  # ran to its end once, after the failed try
    assert f"consumer: id-{name} {name}: " in run.stderr and "nacked for redelivery" in run.stderr
    assert [x["errorCode"] for x in run.lines] == ["DATA_LOSS"]


@pytest.mark.parametrize("language", LANGUAGES)
def test_create_subscription_uses_one_with_its_filter_and_refuses_another(
    language: str, pubsub: PubSub, pubsub_env: str
) -> None:
    topic = pubsub.topic()
    selection = ["--operation-type", "export"]
    sub = pubsub.subscription(topic, filter='attributes.operation_type = "export"')
    publish(pubsub, topic, f"operations/reuse-{language}", "export")
    args = ["--create-subscription", sub, "--topic", topic, *selection, "--timeout", "60"]
    used = start(language, args, pubsub_env=pubsub_env)
    used.wait()
    assert used.returncode == 0, used.why
    assert [x["subject"] for x in used.lines] == [f"operations/reuse-{language}"]

    other = [*args[:4], "--operation-type", "import", "--timeout", "30"]
    refused = start(language, other, pubsub_env=pubsub_env)
    refused.wait()
    assert refused.returncode == 1, refused.why
    assert (
        f'consumer: {sub} exists on topic {topic} with filter "attributes.operation_type = '
        f'\\"export\\"", not on {topic} with "attributes.operation_type = \\"import\\""'
    ) in refused.stderr


# ---- flags -------------------------------------------------------------------------------


def run_flags(language: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*consumer(language), *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "PUBSUB_EMULATOR_HOST"},
    )


def readme_recipes() -> list[tuple[str, str]]:
    """examples/README.md's filter recipes: (flags, filter) from its table."""
    text = (ROOT / "examples" / "README.md").read_text()
    section = text.split("<!-- filter recipes -->", 2)[1]
    return re.findall(r"^\| `([^`]*)` \| `([^`]*)` \|", section, re.M)


def test_the_readme_has_filter_recipes() -> None:
    assert len(readme_recipes()) >= 4


@pytest.mark.parametrize("language", LANGUAGES)
def test_print_filter_gives_the_readme_recipes_and_the_selections(language: str) -> None:
    cases = [(shlex.split(flags), want) for flags, want in readme_recipes()]
    cases += [(s.flags, s.filter) for s in SELECTIONS.values()]
    cases += [
        (["--label", 'a/b=say "hi" \\ bye'], 'attributes.label_a_b = "say \\"hi\\" \\\\ bye"')
    ]
    for flags, want in cases:
        result = run_flags(language, ["--print-filter", *flags])
        assert (result.returncode, result.stdout) == (0, want + "\n"), (flags, result.stderr)


BAD_FLAGS = [
    (["--subscription", "sub"], '"sub" is not projects/P/subscriptions/NAME'),
    ([], "give --subscription or --create-subscription"),
    (
        ["--create-subscription", "projects/p/subscriptions/s"],
        "--create-subscription needs --topic",
    ),
    (
        ["--subscription", "projects/p/subscriptions/s", "--topic", "projects/p/topics/t"],
        "--topic goes with --create-subscription",
    ),
    (["--subscription", "projects/p/subscriptions/s", "--label", "env"], '"env" is not KEY=VALUE'),
    (
        ["--subscription", "projects/p/subscriptions/s", "--result", "broken"],
        '"broken": want succeeded',
    ),
    (["--print-filter", "--operation-type", "x" * 250], "Pub/Sub takes at most 256"),
    (["--subscription", "projects/p/subscriptions/s", "--count=-1"], "0 or more"),
]


@pytest.mark.parametrize(("args", "says"), BAD_FLAGS)
@pytest.mark.parametrize("language", LANGUAGES)
def test_bad_flags_are_refused_with_status_2(language: str, args: list[str], says: str) -> None:
    result = run_flags(language, args)
    assert result.returncode == 2, result
    assert result.stdout == ""
    # Go's messages name the flags with one dash (-topic), Node's with two (--topic).
    assert one_dash(says) in one_dash(result.stderr), result.stderr


def one_dash(text: str) -> str:
    return re.sub(r"(?<![\w-])--(?=\w)", "-", text)
