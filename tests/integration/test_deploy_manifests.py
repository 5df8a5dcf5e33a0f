"""The Kubernetes manifests (deploy/) render with kustomize, validate against the Kubernetes
JSON schemas, and keep the house rules: restricted security context, resources, native gRPC
probes, Services that select their pods, gateway routes that name real Services, no real secret
in the base, and a skaffold.yaml that points at files that exist.

The archive services are the ones of services/catalog.py: a service there without its
Deployment, Service and gateway backend here (or the other way round) fails
`test_deploy_matches_the_service_catalog`.

Offline and fast: `kubectl kustomize` renders (no cluster is contacted) and the
`kubernetes-validate` package carries the schemas.
"""

from __future__ import annotations

import base64
import importlib
import pkgutil
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

import archive.v1
from archive.config import MIN_OPERATOR_TOKEN_LENGTH
from services import catalog
from services.gateway.routes import BACKENDS_VARIABLE, parse_backends, route_table

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BASE = "deploy/base"
DEV = "deploy/overlays/dev"
# The oldest Kubernetes we claim to run on (docs/deploy.md), and the newest the package knows.
KUBERNETES_VERSIONS = ("1.29", kubernetes_validate.latest_version())
# The one image every archive service runs; skaffold substitutes the built tag for it.
ARTIFACT = "archive"
GRPC_PORT = 50051
UID = 10001
PART_OF = ("app.kubernetes.io/part-of", "trusted-archive")
ARCHIVE_SERVICES = {catalog.GATEWAY, *catalog.NAMES}
SECRET_LIKE = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE", re.IGNORECASE)

Doc = dict[str, Any]


@cache
def render(path: str) -> tuple[Doc, ...]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail(
            "kubectl is not installed: the deploy manifests are rendered with `kubectl kustomize`."
            " Install it with `apt-get install kubectl` (1.27 or later; the machine images ship"
            " it). No cluster is needed.",
            pytrace=False,
        )
    proc = subprocess.run(
        [kubectl, "kustomize", str(REPO / path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, f"kubectl kustomize {path} failed:\n{proc.stderr}"
    assert "warning" not in proc.stderr.lower(), f"kustomize warns about {path}:\n{proc.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc)


@pytest.fixture(params=[BASE, DEV], ids=["base", "dev"])
def docs(request: pytest.FixtureRequest) -> tuple[Doc, ...]:
    return render(request.param)


def named(docs: tuple[Doc, ...], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def workloads(docs: tuple[Doc, ...]) -> dict[str, Doc]:
    return {**named(docs, "Deployment"), **named(docs, "StatefulSet")}


def pod_spec(workload: Doc) -> Doc:
    return workload["spec"]["template"]["spec"]


def containers(workload: Doc) -> list[Doc]:
    spec = pod_spec(workload)
    return [*spec.get("initContainers", []), *spec["containers"]]


def image_name(image: str) -> str:
    return image.split("@")[0].rsplit(":", 1)[0] if ":" in image.split("/")[-1] else image


def archive_deployments(docs: tuple[Doc, ...]) -> dict[str, Doc]:
    return {
        name: d
        for name, d in named(docs, "Deployment").items()
        if any(image_name(c["image"]) == ARTIFACT for c in containers(d))
    }


def env_of(docs: tuple[Doc, ...], container: Doc) -> dict[str, str | None]:
    """The container's environment as the kubelet builds it: envFrom ConfigMaps first, then
    env; a value from a Secret or a field shows as None."""
    configmaps = named(docs, "ConfigMap")
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        ref = source["configMapRef"]["name"]
        assert ref in configmaps, f"{container['name']} takes its env from missing ConfigMap {ref}"
        env.update(configmaps[ref].get("data", {}))
    for var in container.get("env", []):
        env[var["name"]] = var.get("value")
    return env


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def effective(workload: Doc, container: Doc, field: str) -> Any:
    own = container.get("securityContext", {})
    return own[field] if field in own else pod_spec(workload).get("securityContext", {}).get(field)


def each_container(docs: tuple[Doc, ...]) -> Iterator[tuple[str, Doc, Doc]]:
    for name, workload in workloads(docs).items():
        for container in containers(workload):
            yield f"{workload['kind']}/{name}/{container['name']}", workload, container


# --- schemas ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_document_validates_against_the_kubernetes_schemas(
    docs: tuple[Doc, ...], version: str
) -> None:
    failures = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            where = "/".join(str(p) for p in e.path)
            failures.append(f"{doc['kind']}/{doc['metadata']['name']} at {where}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            failures.append(e.message)
    assert not failures, "\n".join(failures)


def test_the_base_has_the_expected_objects() -> None:
    docs = render(BASE)
    assert set(archive_deployments(docs)) == ARCHIVE_SERVICES
    assert set(named(docs, "StatefulSet")) == {"nats"}
    assert set(named(docs, "Service")) == ARCHIVE_SERVICES | {"nats", "nats-headless"}
    assert set(named(docs, "PersistentVolumeClaim")) == {"archive-blobs"}
    assert set(named(docs, "NetworkPolicy")) == {"nats-ingress"}
    assert not named(docs, "Secret"), "the base must not carry a Secret"


def test_everything_is_labelled_part_of_the_archive(docs: tuple[Doc, ...]) -> None:
    key, value = PART_OF
    for doc in docs:
        assert doc["metadata"].get("labels", {}).get(key) == value, doc["metadata"]["name"]
    for name, workload in workloads(docs).items():
        assert workload["spec"]["template"]["metadata"]["labels"].get(key) == value, name


# --- workloads ----------------------------------------------------------------------------------


def test_every_container_runs_restricted(docs: tuple[Doc, ...]) -> None:
    for where, workload, container in each_container(docs):
        own = container.get("securityContext", {})
        assert own.get("readOnlyRootFilesystem") is True, where
        assert own.get("allowPrivilegeEscalation") is False, where
        assert "ALL" in own.get("capabilities", {}).get("drop", []), where
        assert not own.get("capabilities", {}).get("add"), where
        assert not own.get("privileged"), where
        assert effective(workload, container, "runAsNonRoot") is True, where
        assert (effective(workload, container, "runAsUser") or 0) > 0, where
        seccomp = effective(workload, container, "seccompProfile") or {}
        assert seccomp.get("type") == "RuntimeDefault", where
    for name, workload in workloads(docs).items():
        spec = pod_spec(workload)
        assert spec.get("automountServiceAccountToken") is False, name
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), name


def test_every_container_has_resource_requests_and_limits(docs: tuple[Doc, ...]) -> None:
    for where, _, container in each_container(docs):
        resources = container.get("resources", {})
        for bound in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                assert resources.get(bound, {}).get(resource), f"{where}: no {bound}.{resource}"


def test_images_are_the_archive_artifact_or_pinned(docs: tuple[Doc, ...]) -> None:
    for where, _, container in each_container(docs):
        image = container["image"]
        if image_name(image) == ARTIFACT:
            continue
        tag = image.split("@")[0].split("/")[-1].partition(":")[2]
        assert (tag and tag != "latest") or "@sha256:" in image, f"{where}: unpinned {image}"


def test_archive_services_probe_grpc_health_on_50051(docs: tuple[Doc, ...]) -> None:
    for name, deployment in archive_deployments(docs).items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels.get("app.kubernetes.io/component") == "archive-service", name
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert container.get("args", [])[:2] == ["serve", name], name
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            grpc = container.get(probe, {}).get("grpc")
            assert grpc is not None, f"{name}: {probe} is not a gRPC probe"
            assert grpc["port"] == GRPC_PORT, f"{name}: {probe}"
            assert grpc.get("service", "") == "", f"{name}: {probe} must ask the overall service"
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"grpc": GRPC_PORT}, name
        env = env_of(docs, container)
        assert env.get("ARCHIVE_GRPC_PORT") == str(GRPC_PORT), name
        assert env.get("ARCHIVE_GRPC_HOST") == "0.0.0.0", name
        assert pod_spec(deployment)["securityContext"]["runAsUser"] == UID, name


def test_writable_paths_are_volumes(docs: tuple[Doc, ...]) -> None:
    """The root filesystem is read-only: /tmp (HOME, TMPDIR), the data directory and the blob
    directory must be mounts, with the volumes the design says."""
    with_blobs = set()
    for name, deployment in archive_deployments(docs).items():
        spec = pod_spec(deployment)
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        (container,) = spec["containers"]
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        for volume in mounts.values():
            assert volume in volumes, f"{name}: mounts undeclared volume {volume}"
        env = env_of(docs, container)
        assert env.get("ARCHIVE_NATS_URL") == "nats://nats:4222", name
        data_dir = env.get("ARCHIVE_DATA_DIR")
        for path in ("/tmp", data_dir):
            assert path in mounts, f"{name}: {path} is not a volume"
            assert "emptyDir" in volumes[mounts[path]], f"{name}: {path} should rebuild (emptyDir)"
        if "ARCHIVE_BLOB_DIR" in env:
            assert env.get("ARCHIVE_BLOB_STORE") == "pack", name
            blobs = volumes[mounts[env["ARCHIVE_BLOB_DIR"]]]
            assert blobs["persistentVolumeClaim"]["claimName"] == "archive-blobs", name
            with_blobs.add(name)
    assert with_blobs == {"ingest", "search", "sealing"}


# --- services and routes ------------------------------------------------------------------------


def test_each_service_selects_exactly_its_workload(docs: tuple[Doc, ...]) -> None:
    all_workloads = workloads(docs)
    for name, service in named(docs, "Service").items():
        selector = service["spec"].get("selector", {})
        chosen = [
            w
            for w in all_workloads.values()
            if selects(selector, w["spec"]["template"]["metadata"]["labels"])
        ]
        assert len(chosen) == 1, f"Service {name} selects {len(chosen)} workloads"
        (workload,) = chosen
        assert selects(workload["spec"]["selector"]["matchLabels"], selector), name
        ports = {p["name"]: p["containerPort"] for c in containers(workload) for p in c["ports"]}
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert target in ports or target in ports.values(), f"{name}: no port {target}"
    for name in archive_deployments(docs):
        service = named(docs, "Service").get(name)
        assert service is not None, f"Deployment {name} has no Service of its name"
        assert service["spec"].get("type", "ClusterIP") == "ClusterIP", name
        (port,) = service["spec"]["ports"]
        assert (port["name"], port["port"], port.get("appProtocol")) == ("grpc", GRPC_PORT, "grpc")


def gateway_environment(docs: tuple[Doc, ...]) -> dict[str, str]:
    (container,) = archive_deployments(docs)[catalog.GATEWAY]["spec"]["template"]["spec"][
        "containers"
    ]
    return {k: v for k, v in env_of(docs, container).items() if v is not None}


def test_deploy_matches_the_service_catalog(docs: tuple[Doc, ...]) -> None:
    """services/catalog.py is the one list: each of its services has a Deployment running
    `archive serve <name>` and a Service of its name, the gateway has one backend per service
    and no other, and the route table the gateway builds from its rendered environment (with
    its own parser) sends every gRPC service of the catalog to the Service of its host."""
    deployments = archive_deployments(docs)
    services = named(docs, "Service")
    assert set(deployments) - {catalog.GATEWAY} == set(catalog.NAMES), (
        "archive Deployments and services/catalog.py disagree"
    )
    for name in catalog.NAMES:
        (container,) = pod_spec(deployments[name])["containers"]
        assert container["args"] == ["serve", name], name
        assert name in services, f"{name} has no Service"
    environment = gateway_environment(docs)
    backends = parse_backends(environment.get(BACKENDS_VARIABLE, ""))
    assert set(backends) == set(catalog.NAMES), f"{BACKENDS_VARIABLE} and the catalog disagree"
    for name, address in backends.items():
        host, _, port = address.rpartition(":")
        assert host == name, f"{BACKENDS_VARIABLE}: {name} is sent to {host}, not its Service"
        assert int(port) in {p["port"] for p in services[host]["spec"]["ports"]}, address
    expected = {
        grpc_service: f"{entry.name}:{GRPC_PORT}"
        for entry in catalog.SERVICES
        for grpc_service in entry.grpc_services
    }
    assert route_table(environment) == expected


def test_every_api_service_has_one_host_in_the_catalog() -> None:
    """A gRPC service added to proto/ but to no service of the catalog would be served by
    nobody behind the gateway."""
    declared = set()
    for module in pkgutil.iter_modules(archive.v1.__path__):
        if module.name.endswith("_pb2"):
            descriptor = importlib.import_module(f"archive.v1.{module.name}").DESCRIPTOR
            declared |= {s.full_name for s in descriptor.services_by_name.values()}
    hosted = [s for entry in catalog.SERVICES for s in entry.grpc_services]
    assert len(hosted) == len(set(hosted)), "a gRPC service is in two catalog entries"
    assert set(hosted) == declared


# --- NATS ---------------------------------------------------------------------------------------


def test_nats_runs_jetstream_on_a_persistent_volume(docs: tuple[Doc, ...]) -> None:
    nats = named(docs, "StatefulSet")["nats"]
    (container,) = pod_spec(nats)["containers"]
    major, minor = (int(n) for n in container["image"].split(":")[1].split(".")[:2])
    assert image_name(container["image"]) == "nats"
    assert (major, minor) >= (2, 12), "atomic batch appends need nats-server 2.12 or later"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    claims = {t["metadata"]["name"] for t in nats["spec"]["volumeClaimTemplates"]}
    config_volume = next(v for v in pod_spec(nats)["volumes"] if v["name"] == "config")
    conf = named(docs, "ConfigMap")[config_volume["configMap"]["name"]]["data"]["nats.conf"]
    assert f"--config {mounts['config']}/nats.conf" in " ".join(container["command"])
    assert re.search(r"^\s*jetstream\s*\{", conf, re.MULTILINE), "JetStream is not enabled"
    # Durable by default: fsync before every acknowledgement (docs/decisions.md D4).
    assert re.search(r"^\s*sync_interval:\s*always\s*$", conf, re.MULTILINE), "not durable"
    store_dir = re.search(r"^\s*store_dir:\s*(\S+)", conf, re.MULTILINE)
    assert store_dir is not None
    persistent = [name for name, path in mounts.items() if name in claims]
    assert any(store_dir[1].startswith(mounts[name]) for name in persistent), store_dir[1]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["client"] == 4222 and ports["monitor"] == 8222
    for probe in ("readinessProbe", "livenessProbe"):
        http = container[probe]["httpGet"]
        assert http["path"] == "/healthz?js-enabled-only=true", probe
        assert ports.get(http["port"], http["port"]) == 8222, probe
    services = named(docs, "Service")
    assert services["nats-headless"]["spec"]["clusterIP"] == "None"
    assert nats["spec"]["serviceName"] == "nats-headless"
    assert [p["port"] for p in services["nats"]["spec"]["ports"]] == [4222]


def test_only_archive_pods_reach_nats(docs: tuple[Doc, ...]) -> None:
    policy = named(docs, "NetworkPolicy")["nats-ingress"]
    nats_labels = named(docs, "StatefulSet")["nats"]["spec"]["template"]["metadata"]["labels"]
    assert selects(policy["spec"]["podSelector"]["matchLabels"], nats_labels)
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    client_rules = [
        rule
        for rule in policy["spec"]["ingress"]
        if any(p.get("port") == 4222 for p in rule.get("ports", []))
    ]
    assert client_rules and all(rule.get("from") for rule in client_rules), "4222 open to all"
    for name, deployment in archive_deployments(docs).items():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert any(
            selects(peer.get("podSelector", {}).get("matchLabels", {}), labels)
            for rule in client_rules
            for peer in rule["from"]
        ), f"{name} pods may not reach NATS"


# --- secrets ------------------------------------------------------------------------------------


def operator_token_refs(docs: tuple[Doc, ...]) -> list[Doc]:
    return [
        var["valueFrom"]["secretKeyRef"]
        for _, _, container in each_container(docs)
        for var in container.get("env", [])
        if var["name"] == "ARCHIVE_OPERATOR_TOKEN"
    ]


def test_no_literal_secret_in_env_or_configmaps(docs: tuple[Doc, ...]) -> None:
    for where, _, container in each_container(docs):
        for var in container.get("env", []):
            if SECRET_LIKE.search(var["name"]):
                assert "value" not in var, f"{where}: {var['name']} is a literal, use a Secret"
    for name, configmap in named(docs, "ConfigMap").items():
        for key in configmap.get("data", {}):
            assert not SECRET_LIKE.search(key), f"ConfigMap {name} holds {key}"


def test_the_base_only_references_the_operator_secret() -> None:
    docs = render(BASE)
    refs = operator_token_refs(docs)
    assert refs, "no service gets ARCHIVE_OPERATOR_TOKEN"
    for ref in refs:
        assert (ref["name"], ref["key"]) == ("archive-operator", "token")
        assert not ref.get("optional"), "a missing operator Secret must stop the pod, not hide"


def test_the_dev_overlay_generates_a_clearly_fake_token() -> None:
    docs = render(DEV)
    secrets = named(docs, "Secret")
    refs = operator_token_refs(docs)
    assert refs
    for ref in refs:
        assert ref["name"] in secrets, f"the dev overlay has no Secret {ref['name']}"
        token = base64.b64decode(secrets[ref["name"]]["data"][ref["key"]]).decode()
        assert len(token) >= MIN_OPERATOR_TOKEN_LENGTH and not re.search(r"\s", token)
        assert "NOT-A-SECRET" in token, "the dev token must say it is fake"
        for path in (REPO / BASE).rglob("*"):
            assert path.is_dir() or token not in path.read_text(), f"dev token in {path}"


# --- sealing's keys ------------------------------------------------------------------------------

SEALING_SECRET = "archive-sealing-keys"
SEALING_KEYS_DIR = "/etc/archive/sealing"
# What sealing reads from files in production, and the Secret key of the TSA URL.
SEALING_FILES = (
    "ARCHIVE_SEAL_KEY_FILE",
    "ARCHIVE_SEAL_CERT_FILE",
    "ARCHIVE_SEAL_CHAIN_FILE",
    "ARCHIVE_SEAL_ROOT_FILE",
    "ARCHIVE_TSA_ROOT_FILE",
    "ARCHIVE_TSA_CHAIN_FILE",
)


def sealing_container(docs: tuple[Doc, ...]) -> tuple[Doc, Doc]:
    spec = pod_spec(archive_deployments(docs)["sealing"])
    (container,) = spec["containers"]
    return spec, container


def test_sealing_keys_come_from_a_read_only_secret_and_production_refuses_its_own_tsa() -> None:
    """Every pod seals under the same root: the keys are a Secret's, never an emptyDir's."""
    docs = render(BASE)
    spec, container = sealing_container(docs)
    env = env_of(docs, container)
    assert env["ARCHIVE_PROFILE"] == "production"
    assert "ARCHIVE_TSA_KEY_FILE" not in env and "ARCHIVE_TSA_CERT_FILE" not in env
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts[SEALING_KEYS_DIR].get("readOnly") is True
    volumes = {v["name"]: v for v in spec["volumes"]}
    secret = volumes[mounts[SEALING_KEYS_DIR]["name"]]["secret"]
    assert secret["secretName"] == SEALING_SECRET and not secret.get("optional")
    assert secret["defaultMode"] in (0o400, 0o440), "keys readable by the service only"
    for variable in SEALING_FILES:
        assert str(env[variable]).startswith(f"{SEALING_KEYS_DIR}/"), variable
    (tsa_url,) = (v for v in container["env"] if v["name"] == "ARCHIVE_TSA_URL")
    assert tsa_url["valueFrom"]["secretKeyRef"] == {"name": SEALING_SECRET, "key": "tsa-url"}


def test_the_documented_secret_command_makes_every_key_sealing_reads() -> None:
    docs = render(BASE)
    _, container = sealing_container(docs)
    env = env_of(docs, container)
    needed = {str(env[v]).removeprefix(f"{SEALING_KEYS_DIR}/") for v in SEALING_FILES}
    needed.add("tsa-url")
    text = (REPO / "docs/deploy.md").read_text().replace("\\\n", " ")
    commands = [
        set(re.findall(r"--from-(?:file|literal)=([\w.-]+)=", line))
        for line in text.splitlines()
        if f"create secret generic {SEALING_SECRET} " in line
    ]
    (made,) = (keys for keys in commands if keys)  # the one that creates it (not the rotation)
    assert made == needed


def test_the_dev_overlay_runs_sealing_in_development_without_the_secret() -> None:
    docs = render(DEV)
    spec, container = sealing_container(docs)
    env = env_of(docs, container)
    assert env["ARCHIVE_PROFILE"] == "development"
    assert not any(v in env for v in (*SEALING_FILES, "ARCHIVE_TSA_URL"))
    assert all("secret" not in volume for volume in spec["volumes"])


# --- skaffold and the image ---------------------------------------------------------------------


def test_skaffold_builds_the_image_and_deploys_the_dev_overlay() -> None:
    config = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    assert config["apiVersion"].startswith("skaffold/v4") and config["kind"] == "Config"
    (artifact,) = config["build"]["artifacts"]
    assert artifact["image"] == ARTIFACT
    context = REPO / artifact.get("context", ".")
    assert context.is_dir()
    assert (context / artifact["docker"]["dockerfile"]).is_file()
    paths = config["manifests"]["kustomize"]["paths"]
    assert paths == [DEV]
    for path in paths:
        assert (REPO / path / "kustomization.yaml").is_file(), path
    assert "kubectl" in config["deploy"]
    services = named(render(DEV), "Service")
    for forward in config["portForward"]:
        assert forward["resourceType"] == "service"
        service = services.get(forward["resourceName"])
        assert service is not None, forward
        assert forward["port"] in {p["port"] for p in service["spec"]["ports"]}, forward
    assert {(f["resourceName"], f["localPort"]) for f in config["portForward"]} == {
        ("gateway", 7070)
    }


def test_the_dockerfile_matches_the_manifests() -> None:
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    lines = [line.strip() for line in dockerfile.splitlines() if not line.startswith("#")]
    assert f"USER {UID}:{UID}" in lines or f"USER {UID}" in lines, "runAsUser is 10001"
    assert 'ENTRYPOINT ["archive"]' in lines
    assert re.search(r'^archive = "', (REPO / "pyproject.toml").read_text(), re.MULTILINE)
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", dockerfile, re.MULTILINE)
    for var in ("PYTHONDONTWRITEBYTECODE=1", "HOME=/tmp", "TMPDIR=/tmp"):
        assert var in dockerfile, var
    ignored = {
        line.strip().rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    sources = [
        line.split()[1] for line in lines if line.startswith("COPY ") and "--from=" not in line
    ]
    assert sources
    for source in sources:
        assert (REPO / source).exists(), f"COPY {source}: no such path"
        assert source.split("/")[0] not in ignored, f"COPY {source} is in .dockerignore"
