"""deploy/: the Terraform module and example, the container image, and what they run.

- OpenTofu `fmt`, `validate` and `test` (with a mocked provider), OpenTofu and the google
  provider built from the Go module proxy by deploy/tools.py; checkov on deploy/terraform.
- Structural checks on the parsed HCL and Dockerfile. Each check is a function that
  raises AssertionError; the tests run it on the real files and on broken copies, so a
  check that can no longer fail is itself a failure.
- The image's command line and the module's settings through the real CLI, then run: the
  schema job's command on Google's Cloud Spanner Emulator, the entrypoint with the Cloud
  Run environment, and the docs' OperationsClient against it; the image's refusal to
  serve every interface without authentication; the tracker's own checks with the
  environment the module gives it with `tracker_auth`.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import click
import hcl2
import httpx
import pytest
from dockerfile_parse import DockerfileParser
from google.api_core import exceptions as gexc
from google.auth.credentials import AnonymousCredentials
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import INSTANCE, PROJECT
from tests.emulators import harness
from tests.helpers import ROOT, make_event
from tracker import cli
from tracker.bindings import to_binary
from tracker.config import SETTINGS, Config
from tracker.errors import ConfigError
from tracker.events import Kind

TERRAFORM = ROOT / "deploy" / "terraform"
MODULE = TERRAFORM / "modules" / "tracker"
EXAMPLE = TERRAFORM / "example"
DOCKERFILE = ROOT / "deploy" / "container" / "Dockerfile"
LOCK = ROOT / "deploy" / "container" / "requirements.txt"
DOCS = ROOT / "docs" / "deploy.md"
# The tracker's authentication settings the module sets with `tracker_auth` (the tofu
# test "tracker_auth" proves the module produces exactly these).
AUTH_ENV_FILE = MODULE / "tests" / "cloud_run_auth_env.json"

TOOL_TIMEOUT = 3600  # building OpenTofu or the provider the first time takes minutes


def _load_tools() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_tools", ROOT / "deploy" / "tools.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tools = _load_tools()


# ---------------------------------------------------------------------------- models

HCL = hcl2.SerializationOptions(
    with_comments=False, explicit_blocks=False, strip_string_quotes=True
)


@dataclass
class Module:
    """The parsed .tf files of one folder."""

    resources: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    data: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    locals: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, dict[str, Any]] = field(default_factory=dict)
    modules: dict[str, dict[str, Any]] = field(default_factory=dict)
    terraform: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, folder: Path) -> Module:
        module = cls()
        for path in sorted(folder.glob("*.tf")):
            with path.open() as fh:
                parsed = hcl2.load(fh, serialization_options=HCL)
            for item in parsed.get("resource", []):
                for rtype, named in item.items():
                    for name, body in named.items():
                        module.resources[(rtype, name)] = body
            for item in parsed.get("data", []):
                for dtype, named in item.items():
                    for name, body in named.items():
                        module.data[(dtype, name)] = body
            for item in parsed.get("locals", []):
                module.locals.update(item)
            for item in parsed.get("variable", []):
                module.variables.update(item)
            for item in parsed.get("module", []):
                module.modules.update(item)
            module.terraform.extend(parsed.get("terraform", []))
        return module

    def resource(self, rtype: str, name: str) -> dict[str, Any]:
        assert (rtype, name) in self.resources, f"missing resource {rtype}.{name}"
        return self.resources[(rtype, name)]


def block(body: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The single nested block `name` of a resource body (also as a dynamic block)."""
    if name in body:
        (inner,) = body[name]
        return dict(inner)
    for dynamic in body.get("dynamic", []):
        if name in dynamic:
            (content,) = dynamic[name]["content"]
            return dict(content)
    raise AssertionError(f"no {name} block")


def dynamic_for_each(body: Mapping[str, Any], name: str) -> str:
    for dynamic in body.get("dynamic", []):
        if name in dynamic:
            return str(dynamic[name]["for_each"])
    raise AssertionError(f"no dynamic {name} block")


# Values for the variables without a default, as a user sets them.
SAMPLE_VARS = {
    "project_id": "my-project",
    "image": "us-central1-docker.pkg.dev/my-project/tracker/tracker@sha256:" + "0" * 64,
}
_EXPR = re.compile(r"\$\{([^{}]*)\}")


def render(module: Module, value: Any) -> str:
    """A module expression as a string: locals and variables resolved, attributes of
    resources that exist only after apply as "x"."""

    def one(match: re.Match[str]) -> str:
        expr = match.group(1).strip()
        wrapped = re.fullmatch(r"tostring\((.+)\)", expr)
        if wrapped:
            expr = wrapped.group(1).strip()
        if re.fullmatch(r"local\.\w+", expr):
            return render(module, module.locals[expr.removeprefix("local.")])
        if re.fullmatch(r"var\.\w+", expr):
            name = expr.removeprefix("var.")
            if name in SAMPLE_VARS:
                return SAMPLE_VARS[name]
            default = module.variables[name].get("default")
            assert default is not None, f"no sample value for var.{name}"
            return render(module, default)
        return "x"

    if isinstance(value, bool):
        return str(value).lower()
    return _EXPR.sub(one, str(value))


@dataclass
class Image:
    """The final stage of the Dockerfile, and the images it is built from."""

    parents: list[str]
    instructions: list[tuple[str, str]]  # final stage only
    env: dict[str, str]
    copies: list[str]  # COPY sources of every stage

    @classmethod
    def load(cls, path: Path = DOCKERFILE) -> Image:
        parser = DockerfileParser(path=str(path))
        stages: list[list[tuple[str, str]]] = []
        copies = []
        for item in parser.structure:
            instruction, value = item["instruction"], item["value"]
            if instruction == "FROM":
                stages.append([])
            if instruction == "COPY" and not value.startswith("--from"):
                copies.extend(value.split()[:-1])
            if stages and instruction != "COMMENT":
                stages[-1].append((instruction, value))
        return cls(list(parser.parent_images), stages[-1], dict(parser.envs), copies)

    def last(self, instruction: str) -> str | None:
        values = [v for i, v in self.instructions if i == instruction]
        return values[-1] if values else None

    def exec_form(self, instruction: str) -> list[str]:
        value = self.last(instruction)
        assert value is not None, f"no {instruction}"
        argv = json.loads(value)  # the exec (JSON) form: no shell between Docker and tracker
        assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), value
        return argv

    @property
    def argv(self) -> list[str]:
        return self.exec_form("ENTRYPOINT") + self.exec_form("CMD")

    @property
    def healthcheck(self) -> list[str]:
        value = self.last("HEALTHCHECK")
        assert value is not None, "no HEALTHCHECK"
        _, sep, command = value.partition("CMD ")
        assert sep, value
        argv = json.loads(command)
        assert isinstance(argv, list)
        return argv


# ---------------------------------------------------------------------------- the CLI


@contextlib.contextmanager
def environment(env: Mapping[str, str]) -> Iterator[None]:
    """os.environ with `env` and without any other TRACKER_* setting."""
    saved = dict(os.environ)
    try:
        for key in [k for k in os.environ if k.startswith("TRACKER_")]:
            del os.environ[key]
        os.environ.update(env)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def parse_command(argv: list[str], env: Mapping[str, str]) -> tuple[str, dict[str, Any]]:
    """Parse `tracker ARGS...` with the real click commands and `env`; the command's path
    (e.g. "serve", "schema apply") and its parameters. Unknown commands, flags or values
    raise, as they would stop the container."""
    assert argv[0] == "tracker", argv
    command: click.Command = cli.cli
    path: list[str] = []
    args = list(argv[1:])
    while isinstance(command, click.Group):
        assert args, f"{argv}: no command"
        name = args.pop(0)
        found = command.get_command(click.Context(command), name)  # the CLI loads it lazily
        assert found is not None, f"{argv}: no command {name!r}"
        command = found
        path.append(name)
    with environment(env):
        ctx = command.make_context(" ".join(path), args)
    return " ".join(path), dict(ctx.params)


def serve_config(argv: list[str], env: Mapping[str, str]) -> Config:
    path, params = parse_command(argv, env)
    assert path == "serve", f"{argv} runs `tracker {path}`, not `tracker serve`"
    return Config(**params).validate()


KNOWN_ENV = {s.envvar for s in SETTINGS} | {"TRACKER_SCHEMAS_DIR"}


# ---------------------------------------------------------------------------- checks


def check_push_subscription(module: Module) -> None:
    sub = module.resource("google_pubsub_subscription", "events")
    assert sub["topic"] == "${google_pubsub_topic.events.id}"
    assert sub["enable_message_ordering"] is True, "message ordering must be on"
    assert dynamic_for_each(sub, "push_config") == "${local.push ? [1] : []}"
    push = block(sub, "push_config")
    assert push["push_endpoint"] == "${local.service_url}/v1/pubsub/push"
    assert "no_wrapper" not in push, "the tracker reads the Pub/Sub push envelope"
    oidc = block(push, "oidc_token")
    assert oidc["service_account_email"] == "${google_service_account.push.email}"
    assert oidc["audience"] == "${local.service_url}"
    # Cloud Run accepts the audience: it is the service's custom audience.
    service = module.resource("google_cloud_run_v2_service", "tracker")
    assert service["custom_audiences"] == ["${local.service_url}"]
    assert render(module, module.locals["service_url"]) == (
        "https://tracker-x.us-central1.run.app"  # NAME-PROJECT_NUMBER.REGION.run.app
    )


def check_delivery_policies(module: Module) -> None:
    sub = module.resource("google_pubsub_subscription", "events")
    dead = block(sub, "dead_letter_policy")
    assert dead["dead_letter_topic"] == "${google_pubsub_topic.dead_letter.id}"
    attempts = module.variables[dead["max_delivery_attempts"].removeprefix("${var.")[:-1]]
    assert 5 <= attempts["default"] <= 100
    retry = block(sub, "retry_policy")
    assert retry["minimum_backoff"] and retry["maximum_backoff"]
    assert block(sub, "expiration_policy")["ttl"] == "", "the subscription must never expire"
    # What reaches the dead-letter topic is kept by a subscription (a topic keeps nothing).
    keeper = module.resource("google_pubsub_subscription", "dead_letter")
    assert keeper["topic"] == "${google_pubsub_topic.dead_letter.id}"


def _principal(body: Mapping[str, Any]) -> str:
    member = str(body["member"])
    if member.startswith("serviceAccount:${google_service_account."):
        return "sa:" + member.split(".")[1]
    if member == "${local.pubsub_agent}":
        return "pubsub-agent"
    if member.startswith("${each.value"):
        match = re.search(r"(local|var)\.(\w+)", str(body["for_each"]))
        assert match, body["for_each"]
        return match.group(2)
    raise AssertionError(f"unexpected member {member}")


_TARGET_KEYS = {
    "google_pubsub_topic_iam_member": ("topic", "topic"),
    "google_pubsub_subscription_iam_member": ("subscription", "subscription"),
    "google_spanner_database_iam_member": ("database", "database"),
    "google_cloud_run_v2_service_iam_member": ("name", "service"),
    "google_service_account_iam_member": ("service_account_id", "sa"),
    "google_secret_manager_secret_iam_member": ("secret_id", "secret"),
}
_CONDITIONS = {
    "${local.pull ? 1 : 0}": "pull",
    "${local.push ? 1 : 0}": "push",
    "${local.auth_tokens ? 1 : 0}": "tokens",
}


def grants(module: Module) -> set[tuple[str, str, str, str]]:
    """(principal, role, target, condition) of every IAM grant of the module."""
    out = set()
    for (rtype, name), body in module.resources.items():
        if "_iam_" not in rtype:
            continue
        assert not rtype.startswith(("google_project_", "google_folder_", "google_organiz")), (
            f"{rtype}.{name}: no grants on the project, folder or organization"
        )
        assert rtype.endswith("_iam_member"), (
            f"{rtype}.{name}: only additive _iam_member grants (bindings and policies"
            " take roles away from others)"
        )
        key, kind = _TARGET_KEYS[rtype]
        target = re.fullmatch(
            r"\$\{(?:google_\w+\.(\w+)(?:\[[^\]]*\])?\.name|var\.tracker_auth\.(tokens_secret))\}",
            str(body[key]),
        )
        assert target, f"{rtype}.{name}: target {body[key]}"
        out.add(
            (
                _principal(body),
                str(body["role"]),
                f"{kind}:{target.group(1) or target.group(2)}",
                _CONDITIONS[body["count"]] if "count" in body else "always",
            )
        )
    return out


# The reviewed IAM table (docs/deploy.md): a grant that is not here fails the tests.
EXPECTED_GRANTS = {
    ("sa:runtime", "roles/spanner.databaseUser", "database:tracker", "always"),
    ("sa:runtime", "roles/pubsub.publisher", "topic:done", "always"),
    ("sa:runtime", "roles/pubsub.subscriber", "subscription:events", "pull"),
    ("sa:runtime", "roles/pubsub.publisher", "topic:dead_letter", "pull"),
    ("sa:runtime", "roles/secretmanager.secretAccessor", "secret:tokens_secret", "tokens"),
    ("sa:schema", "roles/spanner.databaseAdmin", "database:tracker", "always"),
    ("sa:push", "roles/run.invoker", "service:tracker", "push"),
    ("pubsub-agent", "roles/iam.serviceAccountTokenCreator", "sa:push", "always"),
    ("pubsub-agent", "roles/pubsub.publisher", "topic:dead_letter", "always"),
    ("pubsub-agent", "roles/pubsub.subscriber", "subscription:events", "always"),
    ("workers", "roles/pubsub.publisher", "topic:events", "always"),
    ("workers", "roles/pubsub.subscriber", "subscription:control", "always"),
    ("control_publishers", "roles/pubsub.publisher", "topic:control", "always"),
    ("invokers", "roles/run.invoker", "service:tracker", "always"),
    ("done_subscriptions", "roles/pubsub.subscriber", "subscription:done", "always"),
}


def check_iam(module: Module) -> None:
    found = grants(module)
    assert found == EXPECTED_GRANTS, (
        f"unexpected grants: {sorted(found - EXPECTED_GRANTS)};"
        f" missing grants: {sorted(EXPECTED_GRANTS - found)}"
    )
    for principal, role, _, _ in found:
        assert role not in ("roles/owner", "roles/editor", "roles/viewer"), role
        assert not role.endswith(".admin"), f"{principal}: {role}"
    # Who the principals are.
    assert module.locals["pubsub_agent"] == (
        "serviceAccount:service-${data.google_project.this.number}"
        "@gcp-sa-pubsub.iam.gserviceaccount.com"
    )
    workers = str(module.locals["workers"])
    assert "google_service_account.worker[0].email" in workers
    assert "var.worker_members" in workers
    check_invokers(module)
    # Each identity does one job.
    service = module.resource("google_cloud_run_v2_service", "tracker")
    assert service["template"][0]["service_account"] == "${google_service_account.runtime.email}"
    job = module.resource("google_cloud_run_v2_job", "schema")
    job_template = job["template"][0]["template"][0]
    assert job_template["service_account"] == "${google_service_account.schema.email}"
    assert not any(r == "google_project_iam_custom_role" for r, _ in module.resources)


_INVOKER = re.compile(r'can\(regex\("(.+?)", m\)\)')


def check_invokers(module: Module) -> None:
    """Cloud Run IAM lets in one principal at a time, never everyone."""
    invoke = [
        b for (t, _), b in module.resources.items() if t.endswith("run_v2_service_iam_member")
    ]
    assert {str(b["member"]) for b in invoke} == {
        "serviceAccount:${google_service_account.push.email}",
        "${each.value}",
    }, "run.invoker: the push account and the invokers, nothing else"
    assert module.locals["invokers"] == (
        "${distinct(concat(var.api_invokers, var.event_invokers))}"
    )
    for name in ("api_invokers", "event_invokers"):
        validations = module.variables[name].get("validation", [])
        assert len(validations) == 1, f"{name}: one validation, of its members"
        (validation,) = validations
        match = _INVOKER.search(str(validation["condition"]))
        assert match and f"var.{name}" in validation["condition"], f"{name}: no member check"
        member = re.compile(match.group(1).replace("\\\\", "\\"))
        for public in ("allUsers", "allAuthenticatedUsers", "serviceAccount:a@b allUsers"):
            assert not member.search(public), f"{name} would admit {public!r}"
        for principal in ("serviceAccount:w@p.iam.gserviceaccount.com", "group:ops@example.com"):
            assert member.search(principal), f"{name} would refuse {principal!r}"
    for (rtype, name), body in module.resources.items():
        if "_iam_" in rtype:
            assert "allUsers" not in str(body.get("member")), f"{rtype}.{name}: public"
            assert "allAuthenticatedUsers" not in str(body.get("member")), f"{rtype}.{name}"


# How the module sets the tracker's own authentication (main.tf); the tofu tests evaluate
# these expressions, and AUTH_ENV_FILE holds what they give with `tracker_auth`.
AUTH_ENV_HCL = {
    "TRACKER_ALLOW_UNAUTHENTICATED": "${tostring(var.allow_unauthenticated)}",
    "TRACKER_AUTH_AUDIENCE": '${join(" ", var.tracker_auth.audiences)}',
    "TRACKER_GRANT": '${join(" ", local.auth_grants)}',
    "TRACKER_AUTH_TOKENS_FILE": '${local.auth_tokens ? local.auth_tokens_file : ""}',
}


def service_env(module: Module, delivery: str) -> dict[str, str]:
    """The environment the module gives the Cloud Run container by default, rendered."""
    service = module.resource("google_cloud_run_v2_service", "tracker")
    container = service["template"][0]["containers"][0]
    assert dynamic_for_each(container, "env") == "${local.service_env}"
    assert module.locals["service_env"] == (
        "${merge(local.client_env, var.extra_env, local.tracker_env, local.auth_env,"
        " local.pull ? local.tracker_pull_env : {})}"
    ), "the module's settings must win over extra_env"
    assert module.locals["tracker_auth_env"] == AUTH_ENV_HCL
    assert module.locals["auth_env"] == (
        '${{for name, value in local.tracker_auth_env : name => value if value != ""}}'
    ), "empty authentication settings are left out"
    env = dict(module.locals["tracker_env"])
    # By default only TRACKER_ALLOW_UNAUTHENTICATED is set: tracker_auth is empty.
    assert module.variables["tracker_auth"]["default"] == {}
    env["TRACKER_ALLOW_UNAUTHENTICATED"] = module.locals["tracker_auth_env"][
        "TRACKER_ALLOW_UNAUTHENTICATED"
    ]
    if delivery == "pull":
        env.update(module.locals["tracker_pull_env"])
    for name in [*env, *AUTH_ENV_HCL]:
        assert name in KNOWN_ENV, f"{name} is not a setting of `tracker serve` (tracker/config.py)"
    return {name: render(module, value) for name, value in env.items()}


def auth_env() -> dict[str, str]:
    """The authentication settings the module sets with `tracker_auth` (AUTH_ENV_FILE)."""
    env = json.loads(AUTH_ENV_FILE.read_text())
    assert set(env) == set(AUTH_ENV_HCL), "the tofu test compares every setting"
    return {str(k): str(v) for k, v in env.items()}


def check_cloud_run(module: Module, image: Image) -> None:
    service = module.resource("google_cloud_run_v2_service", "tracker")
    template = service["template"][0]
    (container,) = template["containers"]
    assert container["image"] == "${var.image}"
    assert "command" not in container and "args" not in container, (
        "the service must run the image's own ENTRYPOINT/CMD (`tracker serve`)"
    )
    port = int(render(module, "${local.http_port}"))
    assert int(render(module, container["ports"][0]["container_port"])) == port
    for probe in ("startup_probe", "liveness_probe"):
        get = block(container[probe][0], "http_get")
        assert get["path"] == "/healthz", probe
        assert int(render(module, get["port"])) == port, probe
    assert container["resources"][0]["cpu_idle"] is False, "background work needs CPU"
    assert int(render(module, template["scaling"][0]["min_instance_count"])) >= 1
    assert "${google_cloud_run_v2_job.schema}" in service["depends_on"], (
        "the schema must be applied before the service starts"
    )
    for delivery in ("push", "pull"):
        env = {**image_env(image), **service_env(module, delivery)}
        try:
            config = serve_config(image.argv, env)
        except ConfigError as exc:
            raise AssertionError(f"`tracker serve` refuses the Cloud Run settings: {exc}") from exc
        assert config.store == "spanner"
        assert (config.http_host, config.http_port) == ("0.0.0.0", port)
        assert config.grpc_port == -1, "Cloud Run routes one port: gRPC is off there"
        assert config.spanner_database == "projects/my-project/instances/x/databases/x"
        assert config.done_topic == "projects/my-project/topics/x"
        # Cloud Run IAM admits only invokers and strips the signature of the token it
        # checked: the tracker lets in whoever Cloud Run admitted (docs/auth.md).
        assert config.allow_unauthenticated and not config.authenticated
        assert config.push_audience == ""
        assert bool(config.subscription) == (delivery == "pull")
        assert bool(config.dead_letter_topic) == (delivery == "pull")


def check_cloud_run_auth(module: Module, image: Image) -> None:
    """With `tracker_auth` (pull only) the tracker takes the settings and checks callers."""
    env = {**image_env(image), **service_env(module, "pull"), **auth_env()}
    config = serve_config(image.argv, env)
    assert not config.allow_unauthenticated and config.authenticated
    assert config.http_host == "0.0.0.0"
    assert config.auth_audience == ("https://tracker.example.com", "tracker-internal")
    assert config.auth_tokens_file == render(module, module.locals["auth_tokens_file"])
    assert "operations.write=token:ops" in config.grant
    assert config.push_audience == "" and config.subscription


def check_schema_job(module: Module, image: Image) -> None:
    job = module.resource("google_cloud_run_v2_job", "schema")
    (container,) = job["template"][0]["template"][0]["containers"]
    assert container["image"] == "${var.image}", "the job runs the service's image"
    assert container["args"] == "${local.schema_args}"
    assert "command" not in container
    args = [render(module, a) for a in module.locals["schema_args"]]
    argv = image.exec_form("ENTRYPOINT") + args
    path, params = parse_command(argv, image_env(image))
    assert path == "schema apply"
    assert params["store"] == "spanner" and params["variant"] == "canonical"
    assert params["spanner_database"] == render(module, "${local.database_path}")
    Config(store=params["store"], spanner_database=params["spanner_database"]).validate()
    assert "${var.image}" in job["run_execution_token"], "a new image must run the job again"
    database = module.resource("google_spanner_database", "tracker")
    assert "ddl" not in database, "the DDL needs proto descriptors: the job applies it"


def image_env(image: Image) -> dict[str, str]:
    return {k: v for k, v in image.env.items() if k.startswith("TRACKER_")}


def check_image(image: Image) -> None:
    assert image.parents, "no FROM"
    for parent in image.parents:
        assert re.search(r"@sha256:[0-9a-f]{64}$", parent), f"{parent}: pin the base by digest"
        assert ":latest" not in parent, parent
    user = image.last("USER")
    assert user is not None, "no USER: the image would run as root"
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {user}: numeric and not root"
    assert image.argv[:2] == ["tracker", "serve"], image.argv
    for name in image_env(image):
        assert name in KNOWN_ENV, f"{name} is not a tracker setting"
    port = image.env["TRACKER_HTTP_PORT"]
    exposed = (image.last("EXPOSE") or "").split()
    assert port in exposed and image.env["TRACKER_GRPC_PORT"] in exposed, exposed
    assert image.env["TRACKER_HTTP_HOST"] == "0.0.0.0", "reachable from outside the container"
    # ... and so, without authentication, refused: whoever runs the image chooses
    # (docs/auth.md). The image never opens itself to everyone.
    assert "TRACKER_ALLOW_UNAUTHENTICATED" not in image.env, "the image must not open itself"
    assert "/healthz" in " ".join(image.healthcheck)
    # The DDL is package data (tracker/_schemas links to schemas/): the build stage has
    # schemas/ beside tracker/, and nothing points the tracker elsewhere.
    assert "schemas" in image.copies
    assert "TRACKER_SCHEMAS_DIR" not in image.env
    # SQLite (the default store) writes into the user's own folder.
    workdir = image.last("WORKDIR")
    assert str(Path(image.env["TRACKER_DB"]).parent) == workdir
    assert any(
        i == "RUN" and f"--home-dir {workdir} --create-home" in v for i, v in image.instructions
    ), "the SQLite folder must exist and belong to the user"
    # What `pip install .` needs from the repository root.
    for source in image.copies:
        assert (ROOT / source).exists(), f"COPY {source}: not in the build context"
    assert {"pyproject.toml", "README.md", "tracker", "schemas"} <= set(image.copies)


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def module() -> Module:
    return Module.load(MODULE)


@pytest.fixture(scope="module")
def image() -> Image:
    return Image.load()


def _mutated(obj: Any, edit: Callable[[Any], None]) -> Any:
    copied = copy.deepcopy(obj)
    edit(copied)
    return copied


def _events(m: Module) -> dict[str, Any]:
    return m.resources[("google_pubsub_subscription", "events")]


def _push(m: Module) -> dict[str, Any]:
    push: dict[str, Any] = _events(m)["dynamic"][0]["push_config"]["content"][0]
    return push


def _container(m: Module) -> dict[str, Any]:
    service = m.resources[("google_cloud_run_v2_service", "tracker")]
    container: dict[str, Any] = service["template"][0]["containers"][0]
    return container


def _set_instruction(image: Image, instruction: str, value: str) -> None:
    image.instructions = [(i, value if i == instruction else v) for i, v in image.instructions]


def _drop(mapping: dict[str, Any], key: str) -> None:
    del mapping[key]


# ---------------------------------------------------------------------------- tests: HCL


def test_push_subscription_has_oidc_with_the_push_account_and_audience(module: Module) -> None:
    check_push_subscription(module)


def test_dead_letter_retry_and_ordering(module: Module) -> None:
    check_delivery_policies(module)


def test_iam_is_least_privilege(module: Module) -> None:
    check_iam(module)


def test_cloud_run_serves_the_tracker_with_probes_on_healthz(module: Module, image: Image) -> None:
    check_cloud_run(module, image)


def test_cloud_run_invokers_are_named_principals_never_everyone(module: Module) -> None:
    check_invokers(module)


def test_cloud_run_with_tracker_auth_gives_the_tracker_settings_it_accepts(
    module: Module, image: Image
) -> None:
    check_cloud_run_auth(module, image)


def test_schema_job_runs_tracker_schema_apply(module: Module, image: Image) -> None:
    check_schema_job(module, image)


def test_example_root_uses_the_module_with_every_required_variable() -> None:
    example = Module.load(EXAMPLE)
    call = example.modules["tracker"]
    assert call["source"] == "../modules/tracker"
    module = Module.load(MODULE)
    required = {name for name, v in module.variables.items() if "default" not in v}
    assert required == {"project_id", "image"}
    assert required <= set(call)
    assert set(call) - {"source"} <= set(module.variables)
    assert call["delivery"] in ("push", "pull")
    constraint = example.terraform[0]["required_providers"][0]["google"]["version"]
    assert constraint == module.terraform[0]["required_providers"][0]["google"]["version"]
    assert (EXAMPLE / "terraform.tfvars.example").is_file()


BROKEN_MODULES: dict[str, tuple[Callable[[Module], None], Callable[[Module], None]]] = {
    "no oidc token": (
        lambda m: _drop(_push(m), "oidc_token"),
        check_push_subscription,
    ),
    "oidc for the runtime account": (
        lambda m: _push(m)["oidc_token"][0].update(
            service_account_email="${google_service_account.runtime.email}"
        ),
        check_push_subscription,
    ),
    "another audience": (
        lambda m: _push(m)["oidc_token"][0].update(audience="tracker"),
        check_push_subscription,
    ),
    "ordering off": (
        lambda m: _events(m).update(enable_message_ordering=False),
        check_push_subscription,
    ),
    "no dead-letter policy": (
        lambda m: _drop(_events(m), "dead_letter_policy"),
        check_delivery_policies,
    ),
    "no retry policy": (
        lambda m: _drop(_events(m), "retry_policy"),
        check_delivery_policies,
    ),
    "workers get editor": (
        lambda m: m.resources[("google_pubsub_topic_iam_member", "events_workers")].update(
            role="roles/pubsub.editor"
        ),
        check_iam,
    ),
    "project-level owner": (
        lambda m: m.resources.update(
            {
                ("google_project_iam_member", "oops"): {
                    "project": "${var.project_id}",
                    "role": "roles/owner",
                    "member": "serviceAccount:${google_service_account.runtime.email}",
                }
            }
        ),
        check_iam,
    ),
    "runtime subscribes in push mode too": (
        lambda m: _drop(
            m.resources[("google_pubsub_subscription_iam_member", "events_runtime")], "count"
        ),
        check_iam,
    ),
    "a setting the CLI does not have": (
        lambda m: m.locals["tracker_env"].update(TRACKER_PORT="8080"),
        lambda m: check_cloud_run(m, Image.load()),
    ),
    "gRPC on": (
        lambda m: m.locals["tracker_env"].update(TRACKER_GRPC_PORT="8081"),
        lambda m: check_cloud_run(m, Image.load()),
    ),
    "probe elsewhere": (
        lambda m: _container(m)["startup_probe"][0]["http_get"][0].update(path="/"),
        lambda m: check_cloud_run(m, Image.load()),
    ),
    "tracker listens on another port": (
        lambda m: m.locals["tracker_env"].update(TRACKER_HTTP_PORT="9090"),
        lambda m: check_cloud_run(m, Image.load()),
    ),
    "schema job with a renamed flag": (
        lambda m: m.locals["schema_args"].__setitem__(4, "--database"),
        lambda m: check_schema_job(m, Image.load()),
    ),
    "tracker refuses 0.0.0.0 without allow_unauthenticated": (
        lambda m: m.variables["allow_unauthenticated"].update(default=False),
        lambda m: check_cloud_run(m, Image.load()),
    ),
    "auth settings under another name": (
        lambda m: m.locals["tracker_auth_env"].update(TRACKER_TOKENS_FILE="x"),
        lambda m: check_cloud_run(m, Image.load()),
    ),
    "tokens file elsewhere than the mount": (
        lambda m: m.locals.update(auth_tokens_file="/secrets/tokens.toml"),
        lambda m: check_cloud_run_auth(m, Image.load()),
    ),
    "invokers may be anyone": (
        lambda m: m.variables["api_invokers"]["validation"][0].update(
            condition='${alltrue([for m in var.api_invokers : can(regex("^.+$", m))])}'
        ),
        check_iam,
    ),
    "no member check on event_invokers": (
        lambda m: _drop(m.variables["event_invokers"], "validation"),
        check_iam,
    ),
    "allUsers invoke the service": (
        lambda m: m.resources.update(
            {
                ("google_cloud_run_v2_service_iam_member", "public"): {
                    "project": "${var.project_id}",
                    "name": "${google_cloud_run_v2_service.tracker.name}",
                    "role": "roles/run.invoker",
                    "member": "allUsers",
                }
            }
        ),
        check_invokers,
    ),
    "the schema account reads the tokens": (
        lambda m: m.resources[("google_secret_manager_secret_iam_member", "tokens_runtime")].update(
            member="serviceAccount:${google_service_account.schema.email}"
        ),
        check_iam,
    ),
}


@pytest.mark.parametrize("case", list(BROKEN_MODULES))
def test_structural_checks_fail_on_a_broken_module(module: Module, case: str) -> None:
    edit, check = BROKEN_MODULES[case]
    broken = _mutated(module, edit)
    with pytest.raises((AssertionError, click.ClickException)):
        check(broken)


# ---------------------------------------------------------------------------- tests: image


def test_image_is_pinned_non_root_healthchecked_and_runs_tracker_serve(image: Image) -> None:
    check_image(image)


BROKEN_IMAGES: dict[str, Callable[[Image], None]] = {
    "latest base": lambda i: setattr(i, "parents", ["python:latest"]),
    "tag only": lambda i: setattr(i, "parents", ["python:3.13-slim"]),
    "root": lambda i: _set_instruction(i, "USER", "root"),
    "no user": lambda i: setattr(i, "instructions", [x for x in i.instructions if x[0] != "USER"]),
    "no healthcheck": lambda i: setattr(
        i, "instructions", [x for x in i.instructions if x[0] != "HEALTHCHECK"]
    ),
    "shell form": lambda i: _set_instruction(i, "CMD", "serve"),
    "another command": lambda i: _set_instruction(i, "CMD", '["server"]'),
    "port not exposed": lambda i: _set_instruction(i, "EXPOSE", "80"),
    "schemas elsewhere": lambda i: i.env.update(TRACKER_SCHEMAS_DIR="/schemas"),
    "no schemas in the build": lambda i: setattr(
        i, "copies", [c for c in i.copies if c != "schemas"]
    ),
    "open to everyone": lambda i: i.env.update(TRACKER_ALLOW_UNAUTHENTICATED="true"),
}


@pytest.mark.parametrize("case", list(BROKEN_IMAGES))
def test_image_checks_fail_on_a_broken_dockerfile(image: Image, case: str) -> None:
    broken = _mutated(image, BROKEN_IMAGES[case])
    with pytest.raises((AssertionError, ValueError)):
        check_image(broken)


def test_image_command_is_accepted_by_the_cli(image: Image, tmp_path: Path) -> None:
    env = {**image_env(image), "TRACKER_DB": str(tmp_path / "tracker.db")}  # the image's folder
    # Every interface and no authentication: refused, naming the way out.
    with pytest.raises(ConfigError, match="--allow-unauthenticated"):
        serve_config(image.argv, env)
    config = serve_config([*image.argv, "--allow-unauthenticated"], env)
    assert (config.store, config.http_host, config.http_port) == ("sqlite", "0.0.0.0", 8080)
    assert config.grpc_port == 8081
    with pytest.raises(click.NoSuchOption):
        parse_command([*image.argv, "--http-prot", "1"], env)  # the parser is the real one


def test_schemas_dir_overrides_the_packaged_ddl(tmp_path: Path) -> None:
    """TRACKER_SCHEMAS_DIR (an operator's own copy) wins over the package's DDL."""
    copied = tmp_path / "schemas"
    shutil.copytree(ROOT / "schemas", copied)
    # A version only the copy has: seen only if TRACKER_SCHEMAS_DIR is what tracker reads.
    (copied / "spanner" / "0999_marker.sql").write_text(
        "CREATE INDEX DeployMarker ON Operations (Done);\n"
    )
    tracker = shutil.which("tracker", path=str(Path(sys.executable).parent))
    assert tracker, "the tracker console script"
    env = {**os.environ, "TRACKER_SCHEMAS_DIR": str(copied)}
    out = subprocess.run(
        [tracker, "schema", "show"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "CREATE PROTO BUNDLE" in out.stdout and "DeployMarker" in out.stdout
    plain = {k: v for k, v in os.environ.items() if k != "TRACKER_SCHEMAS_DIR"}
    out = subprocess.run(
        [tracker, "schema", "show"], cwd=tmp_path, env=plain, capture_output=True, text=True
    )
    assert out.returncode == 0 and "DeployMarker" not in out.stdout, out.stderr


def test_lock_file_pins_every_runtime_dependency_with_hashes() -> None:
    pyproject = (ROOT / "pyproject.toml").read_text()
    deps_block = pyproject.split("dependencies = [", 1)[1].split("]", 1)[0]
    wanted = [Requirement(d) for d in re.findall(r'"([^"]+)"', deps_block)]
    wanted.append(Requirement("setuptools>=77"))  # builds tracker inside the image
    text = LOCK.read_text()
    pins = {
        canonicalize_name(name): version
        for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", text, re.M)
    }
    stale = [
        str(r)
        for r in wanted
        if canonicalize_name(r.name) not in pins
        or not r.specifier.contains(pins[canonicalize_name(r.name)], prereleases=True)
    ]
    assert not stale, f"{stale} not pinned in {LOCK.name}: run deploy/container/lock.sh"
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n\n", 1)[-1])
    for entry in [e for e in entries if "==" in e]:
        assert "--hash=sha256:" in entry, f"no hash: {entry.splitlines()[0]}"


def test_dockerignore_keeps_what_the_dockerfile_copies(image: Image) -> None:
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert set(image.copies) <= allowed


# ---------------------------------------------------------------------------- tests: run it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def running_entrypoint(
    image: Image, env: Mapping[str, str], cwd: Path
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """The image's ENTRYPOINT/CMD, with the venv's `tracker` console script."""
    tracker = shutil.which("tracker", path=str(Path(sys.executable).parent))
    assert tracker
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    proc = subprocess.Popen(
        [tracker, *image.argv[1:]],
        cwd=cwd,
        env={**base, **env},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the server prints its address once it listens
            if re.search(r"HTTP on http://\S+,", line):
                break
        else:
            raise AssertionError(f"tracker serve exited with {proc.wait()}")
        yield f"http://127.0.0.1:{env['TRACKER_HTTP_PORT']}", proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        assert proc.stderr is not None
        proc.stderr.close()


def _healthcheck(image: Image, port: str) -> int:
    argv = image.healthcheck
    assert argv[0] == "python"
    env = {**os.environ, "TRACKER_HTTP_PORT": port}
    return subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True).returncode


def test_image_entrypoint_refuses_to_serve_everyone_unless_told(
    image: Image, tmp_path: Path
) -> None:
    """`docker run IMAGE` with no authentication configured stops with one line; with
    TRACKER_ALLOW_UNAUTHENTICATED (what the Cloud Run module sets) it serves."""
    port = str(_free_port())
    env = {
        **image_env(image),
        "TRACKER_DB": str(tmp_path / "tracker.db"),
        "TRACKER_HTTP_PORT": port,
        "TRACKER_GRPC_PORT": str(_free_port()),
    }
    tracker = shutil.which("tracker", path=str(Path(sys.executable).parent))
    assert tracker
    base = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    refused = subprocess.run(
        [tracker, *image.argv[1:]],
        cwd=tmp_path,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2, refused.stderr
    (line,) = refused.stderr.splitlines()  # one line, no traceback
    assert line.startswith("tracker: error: --http-host 0.0.0.0, --grpc-host 0.0.0.0:"), line
    assert "--allow-unauthenticated" in line and "--auth-audience" in line
    assert _healthcheck(image, port) != 0, "nothing listens"

    with running_entrypoint(image, {**env, "TRACKER_ALLOW_UNAUTHENTICATED": "true"}, tmp_path) as (
        url,
        _,
    ):
        assert httpx.get(f"{url}/healthz").status_code == 200
        assert httpx.get(f"{url}/v1/operations").status_code == 200  # open, as asked


def test_image_entrypoint_serves_and_its_healthcheck_passes(image: Image, tmp_path: Path) -> None:
    port = str(_free_port())
    env = {
        **image_env(image),
        "TRACKER_DB": str(tmp_path / "tracker.db"),
        "TRACKER_HTTP_PORT": port,
        "TRACKER_GRPC_PORT": str(_free_port()),
        "TRACKER_ALLOW_UNAUTHENTICATED": "true",
    }
    with running_entrypoint(image, env, tmp_path) as (url, proc):
        answer = httpx.get(f"{url}/healthz")
        assert answer.status_code == 200 and answer.json()["status"] == "ok"
        assert _healthcheck(image, port) == 0
        proc.send_signal(signal.SIGTERM)  # what Docker and Cloud Run send to stop it
        assert proc.wait(15) == 0
    assert _healthcheck(image, port) != 0, "the health check must fail when nothing answers"


def _docs_operations_client() -> Callable[..., Any]:
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), re.S)
    (code,) = [b for b in blocks if "def operations_client(" in b]
    namespace: dict[str, Any] = {}
    exec(compile(code, str(DOCS), "exec"), namespace)
    return namespace["operations_client"]


def _push_envelope(event_headers: Mapping[str, str], body: bytes) -> dict[str, Any]:
    return {
        "message": {
            "attributes": dict(event_headers),
            "data": base64.b64encode(body).decode(),
            "messageId": uuid.uuid4().hex,
            "publishTime": "2026-01-01T00:00:00Z",
        },
        "subscription": "projects/my-project/subscriptions/tracker-events",
    }


@pytest.mark.emulators
@pytest.mark.timeout(300)
def test_cloud_run_configuration_end_to_end(
    module: Module,
    image: Image,
    tmp_path: Path,
    spanner_hosts: dict[str, str],
) -> None:
    """What the module runs, run here on Google's Cloud Spanner Emulator: the schema job's
    command, then the image's entrypoint with the Cloud Run environment."""
    from google.cloud import spanner

    emulator = {
        "SPANNER_EMULATOR_HOST": spanner_hosts["cloud-spanner-emulator"],
        **harness.SPANNER_CLIENT_ENV,
    }
    database_id = f"deploy{os.getpid()}"
    path = f"projects/{PROJECT}/instances/{INSTANCE}/databases/{database_id}"
    with environment(emulator):
        client = spanner.Client(project=PROJECT)
        instance = client.instance(
            INSTANCE, configuration_name=f"projects/{PROJECT}/instanceConfigs/emulator-config"
        )
        with contextlib.suppress(gexc.AlreadyExists):
            instance.create().result(60)
        instance.database(database_id).create().result(60)  # what Terraform creates: empty

    base = {k: v for k, v in os.environ.items() if not k.startswith("TRACKER_")}
    job_args = [render(module, a) for a in module.locals["schema_args"]]
    job_args[job_args.index("--spanner-database") + 1] = path
    tracker = shutil.which("tracker", path=str(Path(sys.executable).parent))
    assert tracker
    for attempt in (1, 2):  # a second execution finds nothing to do
        job = subprocess.run(
            [tracker, *job_args],
            env={**base, **emulator, **image_env(image)},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert job.returncode == 0, job.stderr
        assert ("applied 1" if attempt == 1 else "nothing new") in job.stdout

    env = {
        **emulator,
        **image_env(image),
        **service_env(module, "push"),
        "TRACKER_SPANNER_DATABASE": path,
        "TRACKER_DONE_TOPIC": "",  # no Pub/Sub here; the outbox keeps the notification
        "TRACKER_HTTP_HOST": "127.0.0.1",
        "TRACKER_HTTP_PORT": str(_free_port()),  # Cloud Run's PORT is 8080; any port here
    }
    assert env["TRACKER_GRPC_PORT"] == "-1"
    with running_entrypoint(image, env, tmp_path) as (url, _):
        assert httpx.get(f"{url}/healthz").status_code == 200
        name = "operations/deploy/e2e-1"
        headers, body = to_binary(make_event(Kind.SUCCEEDED, name))
        pushed = httpx.post(f"{url}/v1/pubsub/push", json=_push_envelope(headers, body))
        # No token check in the tracker here: Cloud Run IAM admitted the push account, and
        # the tracker runs with TRACKER_ALLOW_UNAUTHENTICATED.
        assert env["TRACKER_ALLOW_UNAUTHENTICATED"] == "true"
        assert pushed.status_code == 204, pushed.text

        operations_client = _docs_operations_client()
        ops = operations_client(url, credentials=AnonymousCredentials())
        operation = ops.get_operation(name)
        assert operation.done and operation.HasField("response")
        assert [o.name for o in ops.list_operations("operations", "done = true")] == [name]
        with pytest.raises(gexc.NotFound):
            ops.get_operation("operations/deploy/missing")


def _stripped(token: str) -> str:
    """A token as Cloud Run passes on one it verified: its signature removed."""
    head, payload, _ = token.split(".")
    return f"{head}.{payload}.SIGNATURE_REMOVED_BY_GOOGLE"


def test_cloud_run_with_tracker_auth_checks_every_caller(
    module: Module, image: Image, tmp_path: Path
) -> None:
    """The entrypoint with the environment `tracker_auth` gives it (AUTH_ENV_FILE), the
    tokens file where the secret would be mounted: the tracker checks the Authorization
    header behind Cloud Run, which took its own token from X-Serverless-Authorization."""
    from tests.tokens import CERT, Certs, id_token
    from tracker.auth import token_digest

    ops, exporter = "ops-" + uuid.uuid4().hex * 2, "exporter-" + uuid.uuid4().hex * 2
    tokens = tmp_path / "tokens.toml"
    tokens.write_text(f'ops = "{token_digest(ops)}"\nexporter = "{token_digest(exporter)}"\n')
    certs = Certs({"k1": CERT})
    env = {
        **image_env(image),
        **service_env(module, "pull"),
        **auth_env(),
        "TRACKER_AUTH_TOKENS_FILE": str(tokens),
        "TRACKER_AUTH_CERTS_URL": certs.url,  # Google's, in production
        # No Google Cloud here: SQLite, no subscription, no completion topic.
        "TRACKER_STORE": "sqlite",
        "TRACKER_DB": str(tmp_path / "tracker.db"),
        "TRACKER_SUBSCRIPTION": "",
        "TRACKER_DEAD_LETTER_TOPIC": "",
        "TRACKER_DONE_TOPIC": "",
        "TRACKER_HTTP_HOST": "127.0.0.1",
        "TRACKER_HTTP_PORT": str(_free_port()),
    }
    cloud_run = {"x-serverless-authorization": f"Bearer {_stripped(id_token())}"}

    def call(
        method: str, path: str, token: str | None, extra: Mapping[str, str] = {}, **kw: Any
    ) -> int:
        sent = {**cloud_run, **extra}
        if token is not None:
            sent["authorization"] = f"Bearer {token}"
        return httpx.request(method, f"{url}{path}", headers=sent, **kw).status_code

    name = "operations/deploy/auth-1"
    headers, body = to_binary(make_event(Kind.PROGRESS, name))
    exporter_sa = id_token(
        audience="tracker-internal", email="exporter@my-project.iam.gserviceaccount.com"
    )
    alice = id_token(audience="https://tracker.example.com", email="alice@example.com")
    try:
        with running_entrypoint(image, env, tmp_path) as (url, _):
            assert call("GET", "/healthz", None) == 200  # probes need no credentials
            assert call("POST", "/v1/events", None, headers, content=body) == 401
            assert call("GET", f"/v1/{name}", None) == 401
            # Static tokens from the file, by their grants.
            assert call("POST", "/v1/events", exporter, headers, content=body) == 200
            assert call("GET", f"/v1/{name}", exporter) == 403
            assert call("GET", f"/v1/{name}", ops) == 200
            # Google ID tokens for either audience, by account or domain.
            assert call("POST", "/v1/events", exporter_sa, headers, content=body) == 200
            assert call("GET", f"/v1/{name}", alice) == 200
            assert call("POST", f"/v1/{name}:cancel", alice, json={}) == 403
            assert call("POST", f"/v1/{name}:cancel", ops, json={}) == 200
            # What Cloud Run leaves of the token it checked proves nothing to the tracker.
            assert call("GET", f"/v1/{name}", _stripped(alice)) == 401
            assert call("GET", f"/v1/{name}", ops + "x") == 401
    finally:
        certs.close()


# ---------------------------------------------------------------------------- tests: tools


@pytest.mark.timeout(TOOL_TIMEOUT)
def test_tofu_fmt() -> None:
    tofu = tools.tofu()
    out = subprocess.run(
        [str(tofu), "fmt", "-check", "-recursive", "-diff", "-no-color", str(TERRAFORM)],
        env={**os.environ, "TF_CLI_CONFIG_FILE": os.devnull},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, f"run `tofu fmt -recursive deploy/terraform`:\n{out.stdout}"


@contextlib.contextmanager
def initialized(tmp_path: Path, folder: str) -> Iterator[Callable[..., str]]:
    """A copy of deploy/terraform with `folder` initialized offline: providers from the
    mirror deploy/tools.py builds. Yields a function running tofu there."""
    tofu = tools.tofu()
    config = tools.cli_config(tools.provider_mirror())
    work = tmp_path / "terraform"
    shutil.copytree(TERRAFORM, work, ignore=shutil.ignore_patterns(".terraform*"))
    env = {
        **os.environ,
        "TF_CLI_CONFIG_FILE": str(config),
        "TF_IN_AUTOMATION": "1",
        "CHECKPOINT_DISABLE": "1",
    }

    def run(*args: str) -> str:
        out = subprocess.run(
            [str(tofu), *args, "-no-color"],
            cwd=work / folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert out.returncode == 0, f"tofu {args[0]} in {folder}:\n{out.stdout}\n{out.stderr}"
        return out.stdout

    try:
        run("init", "-backend=false", "-input=false")
        yield run
    finally:
        config.unlink(missing_ok=True)


@pytest.mark.timeout(TOOL_TIMEOUT)
def test_tofu_validate(tmp_path: Path) -> None:
    with initialized(tmp_path, "example") as tofu:
        assert "Success!" in tofu("validate")


@pytest.mark.timeout(TOOL_TIMEOUT)
def test_tofu_test_with_a_mocked_provider(tmp_path: Path) -> None:
    """deploy/terraform/modules/tracker/tests/*.tftest.hcl: both delivery modes planned."""
    with initialized(tmp_path, "modules/tracker") as tofu:
        out = tofu("test")
    assert re.search(r"Success! [1-9]\d* passed, 0 failed", out), out


# Checks that do not apply, each with its reason (docs/deploy.md, Checks).
CHECKOV_SKIPS = {
    # Customer-managed encryption keys: data is encrypted with Google-managed keys; CMEK
    # needs a KMS key and grants for the service agents, not created by this module.
    "CKV_GCP_83": "Pub/Sub topics with CMEK",
    "CKV_GCP_93": "Spanner database with CMEK",
}


@pytest.mark.timeout(TOOL_TIMEOUT)
def test_checkov(tmp_path: Path) -> None:
    checkov = tools.checkov()
    out = subprocess.run(
        [
            str(checkov),
            "--directory",
            str(TERRAFORM),
            "--framework",
            "terraform",
            "--skip-download",
            "--skip-check",
            ",".join(CHECKOV_SKIPS),
            "--output",
            "json",
            "--quiet",
        ],
        env={**os.environ, "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads(out.stdout)
    summary = report["summary"]
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']})"
        for c in report["results"]["failed_checks"]
    ]
    assert summary["failed"] == 0 and out.returncode == 0, failed
    assert summary["passed"] > 0, "checkov checked nothing"
