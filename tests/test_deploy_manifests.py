"""The deployment files, checked by reading them: the Dockerfile, the kustomize
base under deploy/ and the settings they name.

Neither Docker nor a cluster runs here, so these tests hold the facts that
matter for a correct deployment: probes on the serving port, a non-root user,
a termination period longer than the shutdown grace, a kustomization that
lists every manifest, and only real ``LIYA_*`` setting names.
"""

from __future__ import annotations

import base64
import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from liya_engine.cli import build_parser
from liya_engine.settings import Settings
from liya_engine.settings import variables as settings_variables

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
BASE = DEPLOY / "base"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
EXAMPLE_SUFFIX = ".example.yaml"
# The oldest Kubernetes with the native gRPC probe generally available.
MIN_KUBERNETES = "1.27.0"


# -- loading ---------------------------------------------------------------


def _yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in (".yaml", ".yml"))


def _manifests() -> list[Path]:
    """Kubernetes manifests of the base (everything but the kustomization and lint config)."""
    return sorted(
        p
        for p in BASE.glob("*.yaml")
        if p.name != "kustomization.yaml" and not p.name.startswith(".")
    )


def _load(path: Path) -> dict:
    docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]
    assert len(docs) == 1, f"{path.name}: expected one document, found {len(docs)}"
    assert isinstance(docs[0], dict), f"{path.name}: not a mapping"
    return docs[0]


def _resource(kind: str, name: str | None = None) -> dict:
    found = [
        doc
        for doc in map(_load, _kustomization_resources())
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''} in the kustomization"
    return found[0]


def _kustomization() -> dict:
    return _load(BASE / "kustomization.yaml")


def _kustomization_resources() -> list[Path]:
    return [BASE / r for r in _kustomization()["resources"]]


def _deployment() -> dict:
    return _resource("Deployment")


def _pod() -> dict:
    return _deployment()["spec"]["template"]["spec"]


def _container() -> dict:
    containers = _pod()["containers"]
    assert len(containers) == 1
    return containers[0]


def _configmap() -> dict:
    name = _container()["envFrom"][0]["configMapRef"]["name"]
    return _resource("ConfigMap", name)


def _example_secret() -> dict:
    return _load(BASE / f"secret{EXAMPLE_SUFFIX}")


def _settings_names() -> set[str]:
    """Every LIYA_* name the settings table reads."""
    names = set(settings_variables())
    assert "LIYA_LISTEN_ADDRESS" in names and "LIYA_MASTER_KEYS_FILE" in names
    return names


def _container_port(name: str) -> int:
    ports = {p["name"]: p["containerPort"] for p in _container()["ports"]}
    return ports[name]


def _dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile as stages of (INSTRUCTION, arguments), continuations joined."""
    lines: list[str] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "Dockerfile ends inside a continued line"
    stages: list[list[tuple[str, str]]] = [[]]
    for line in lines:
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            stages.append([])
        stages[-1].append((instruction, args.strip()))
    return stages


def _final_stage() -> list[tuple[str, str]]:
    return _dockerfile_stages()[-1]


def _instructions(stage: list[tuple[str, str]], name: str) -> list[str]:
    return [args for instruction, args in stage if instruction == name]


def _dockerfile_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in _instructions(stage, "ENV"):
        for key, value in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", args):
            env[key] = value
    return env


def _dockerfile_args() -> dict[str, str]:
    args: dict[str, str] = {}
    for value in _instructions(_dockerfile_stages()[0], "ARG"):
        key, _, default = value.partition("=")
        args[key] = default
    return args


def _server_env(tmp_path: Path) -> dict[str, str]:
    """The environment a pod of the base gets, with the Secret's files and
    values replaced by valid local stand-ins."""
    container = _container()
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    env = dict(_configmap()["data"])
    for item in container["env"]:
        name = item["name"]
        if "value" in item:
            value = item["value"]
            if name.endswith("_FILE"):
                local = tmp_path / Path(value).name
                if name == "LIYA_MASTER_KEYS_FILE":
                    local.write_text("mk-test:" + base64.b64encode(bytes(32)).decode() + "\n")
                elif name == "LIYA_DATABASE_URL_FILE":
                    local.write_text("postgresql+asyncpg://liya@db.example.invalid/liya_engine\n")
                else:
                    local.write_text("x" * 48 + "\n")
                assert str(Path(value).parent) in mounts, f"{name} is not under a mounted volume"
                value = str(local)
            env[name] = value
    return env


# -- every file ------------------------------------------------------------


def test_every_yaml_file_under_deploy_parses():
    files = _yaml_files()
    assert files, "no YAML under deploy/"
    for path in files:
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert doc is None or isinstance(doc, dict), path.name


def test_every_manifest_has_a_kind_a_name_and_the_app_label():
    for path in _manifests():
        doc = _load(path)
        assert doc.get("apiVersion") and doc.get("kind"), path.name
        assert doc["metadata"]["name"].startswith("liya-engine"), path.name
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "liya-engine", path.name
        assert "namespace" not in doc["metadata"], f"{path.name}: the overlay sets the namespace"


def test_yamllint_is_clean():
    linter = pytest.importorskip("yamllint.linter")
    config_module = pytest.importorskip("yamllint.config")
    config = config_module.YamlLintConfig(file=str(DEPLOY / ".yamllint.yaml"))
    problems = []
    for path in _yaml_files():
        for problem in linter.run(path.read_text(encoding="utf-8"), config, str(path)):
            problems.append(f"{path.relative_to(ROOT)}:{problem.line}: {problem.message}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("version", [MIN_KUBERNETES, "latest"])
def test_manifests_match_the_kubernetes_schema(version):
    kv = pytest.importorskip("kubernetes_validate")
    version = kv.latest_version() if version == "latest" else version
    for path in _manifests():
        try:
            kv.validate(_load(path), version, strict=True)
        except kv.ValidationError as exc:
            pytest.fail(f"{path.name} against Kubernetes {version}: {exc.message}")


# -- kustomization ---------------------------------------------------------


def test_kustomization_lists_every_manifest_but_the_example_secret():
    listed = _kustomization()["resources"]
    assert len(listed) == len(set(listed)), "a resource is listed twice"
    for name in listed:
        assert (BASE / name).is_file(), f"kustomization lists {name}, which does not exist"
    expected = {p.name for p in _manifests() if not p.name.endswith(EXAMPLE_SUFFIX)}
    assert set(listed) == expected
    assert not any(name.endswith(EXAMPLE_SUFFIX) for name in listed)


def test_no_real_secret_is_committed():
    for path in _manifests():
        doc = _load(path)
        if doc["kind"] == "Secret":
            assert path.name.endswith(EXAMPLE_SUFFIX), f"{path.name}: a Secret outside an example"
            assert "EXAMPLE" in path.read_text(encoding="utf-8").splitlines()[0]


def test_the_example_secret_is_refused_by_the_server():
    values = _example_secret()["stringData"]
    with pytest.raises(ValueError, match="base64"):
        Settings.from_env({"LIYA_MASTER_KEYS": values["master-keys"]})
    with pytest.raises(ValueError, match="at least 32"):
        Settings.from_env({"LIYA_JWT_HS256_SECRET": values["jwt-hs256-secret"]})


# -- deployment ------------------------------------------------------------


def test_deployment_runs_several_replicas_of_serve():
    spec = _deployment()["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    container = _container()
    assert container["image"] in {i["name"] for i in _kustomization()["images"]}
    args = container.get("args", [])
    assert args == ["serve"]
    assert build_parser().parse_args(args).command == "serve"
    assert "command" not in container, "the image's ENTRYPOINT is liya-engine"


def test_probes_are_native_grpc_on_the_serving_port(tmp_path):
    container = _container()
    serving_port = int(Settings.from_env(_server_env(tmp_path)).listen_address.rpartition(":")[2])
    assert serving_port == _container_port("grpc") == 50051
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        probe = container[kind]
        assert set(probe) & {"exec", "httpGet", "tcpSocket"} == set(), kind
        assert probe["grpc"]["port"] == serving_port, kind
        # Readiness follows the whole server (""); liveness only the process.
        from liya_engine.app import LIVENESS_SERVICE

        expected = LIVENESS_SERVICE if kind == "livenessProbe" else ""
        assert probe["grpc"].get("service", "") == expected, kind


def test_the_metrics_port_is_the_configured_one(tmp_path):
    settings = Settings.from_env(_server_env(tmp_path))
    assert settings.metrics_address is not None
    assert int(settings.metrics_address.rpartition(":")[2]) == _container_port("metrics")
    annotations = _deployment()["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == _container_port("metrics")


def test_runs_as_non_root_with_a_read_only_root_and_no_privileges():
    pod, container = _pod(), _container()
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["automountServiceAccountToken"] is False
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert "add" not in sc["capabilities"]
    uid = _dockerfile_user()[0]
    assert pod["securityContext"]["runAsUser"] == sc["runAsUser"] == uid


def test_resources_have_requests_and_limits():
    resources = _container()["resources"]
    for section in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(resources[section]), section


def test_termination_period_outlasts_the_pause_and_the_shutdown_grace(tmp_path):
    grace = Settings.from_env(_server_env(tmp_path)).shutdown_grace_seconds
    pause = 0.0
    pre_stop = _container().get("lifecycle", {}).get("preStop")
    if pre_stop is not None:
        if "sleep" in pre_stop:
            pause = float(pre_stop["sleep"]["seconds"])
        else:
            command = pre_stop["exec"]["command"]
            assert command[0] == "sleep" and len(command) == 2, command
            pause = float(command[1])
    period = _pod()["terminationGracePeriodSeconds"]
    assert period > pause + grace, (period, pause, grace)
    # A few seconds beyond, to close the database pool and connections.
    assert period - (pause + grace) >= 5


def test_every_setting_named_is_a_real_setting(tmp_path):
    known = _settings_names()
    container = _container()
    named = set(_configmap()["data"]) | {item["name"] for item in container["env"]}
    unknown = sorted(n for n in named if n not in known)
    assert not unknown, f"not settings in settings.py: {unknown}"
    # And the values are accepted: the server builds its settings from them.
    settings = Settings.from_env(_server_env(tmp_path))
    assert settings.log_format == "json"
    assert settings.workers == 1
    assert settings.database_url.startswith("postgresql+asyncpg://")
    assert not settings.allow_insecure_endpoints


def test_secrets_come_from_files_or_secret_refs_never_plain_values():
    container = _container()
    config = _configmap()["data"]
    secret_settings = {
        "LIYA_MASTER_KEYS",
        "LIYA_JWT_HS256_SECRET",
        "LIYA_DATABASE_URL",
        "LIYA_MANAGED_OPENAI_API_KEY",
        "LIYA_MANAGED_ANTHROPIC_API_KEY",
        "LIYA_MANAGED_AZURE_API_KEY",
    }
    assert not secret_settings & set(config), "a secret setting in the ConfigMap"
    plain = {item["name"] for item in container["env"] if "value" in item}
    assert not secret_settings & plain, "a secret setting as a plain env value"
    # Every secret is a file named by the setting's *_FILE form: a variable
    # would take precedence over its file, and none comes from secretKeyRef
    # (the value would sit in the process environment).
    assert [(item["name"], sorted(item)) for item in container["env"]] == [
        ("LIYA_MASTER_KEYS_FILE", ["name", "value"]),
        ("LIYA_JWT_HS256_SECRET_FILE", ["name", "value"]),
        ("LIYA_DATABASE_URL_FILE", ["name", "value"]),
    ]
    assert not secret_settings & {item["name"] for item in container["env"]}
    assert "envFrom" not in container or all(
        "secretRef" not in source for source in container["envFrom"]
    )
    assert "LIYA_ALLOW_INSECURE_ENDPOINTS" not in config


def test_secret_files_match_the_example_secret():
    example = _example_secret()
    text = (BASE / f"secret{EXAMPLE_SUFFIX}").read_text()
    optional = set(re.findall(r"^\s*#\s*([a-z0-9-]+):", text, re.MULTILINE))
    assert optional == {
        "managed-openai-api-key",
        "managed-anthropic-api-key",
        "managed-azure-api-key",
    }
    # The optional keys' files have a *_FILE setting an overlay names.
    known = _settings_names()
    for key in optional:
        assert f"LIYA_{key.upper().replace('-', '_')}_FILE" in known, key
    secret_name = example["metadata"]["name"]
    container = _container()
    volumes = {v["name"]: v for v in _pod()["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    files = {item["name"]: item["value"] for item in container["env"] if "value" in item}
    named = set()
    for name in ("LIYA_MASTER_KEYS_FILE", "LIYA_JWT_HS256_SECRET_FILE", "LIYA_DATABASE_URL_FILE"):
        path = Path(files[name])
        mount = mounts[str(path.parent)]
        assert mount["readOnly"] is True, name
        volume = volumes[mount["name"]]
        assert volume["secret"]["secretName"] == secret_name, name
        assert path.name in example["stringData"], f"{name}: no {path.name} in the Secret"
        named.add(path.name)
        # Readable by the group (fsGroup), never by others.
        assert volume["secret"]["defaultMode"] & 0o007 == 0, name
    assert named == set(example["stringData"])  # every required key is read
    assert _pod()["securityContext"]["fsGroup"] == _dockerfile_user()[1]


def test_service_exposes_grpc_by_name_and_app_protocol():
    pod_labels = _deployment()["spec"]["template"]["metadata"]["labels"]
    container_ports = {p["name"] for p in _container()["ports"]}
    for name in ("liya-engine", "liya-engine-headless"):
        spec = _resource("Service", name)["spec"]
        if name == "liya-engine":
            assert spec.get("type", "ClusterIP") == "ClusterIP"
        else:
            assert spec["clusterIP"] == "None"
        assert spec["selector"].items() <= pod_labels.items()
        grpc_port = next(p for p in spec["ports"] if p["name"] == "grpc")
        assert grpc_port["port"] == 50051
        assert grpc_port["appProtocol"] == "grpc"
        assert grpc_port["targetPort"] in container_ports


def test_pod_disruption_budget_keeps_one_replica():
    pdb = _resource("PodDisruptionBudget")["spec"]
    assert pdb["minAvailable"] == 1
    assert pdb["minAvailable"] < _deployment()["spec"]["replicas"]
    pod_labels = _deployment()["spec"]["template"]["metadata"]["labels"]
    assert pdb["selector"]["matchLabels"].items() <= pod_labels.items()
    assert _deployment()["spec"]["selector"]["matchLabels"] == pdb["selector"]["matchLabels"]


# -- Dockerfile ------------------------------------------------------------


def _dockerfile_user() -> tuple[int, int]:
    users = _instructions(_final_stage(), "USER")
    assert users, "the final stage sets no USER"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and gid.isdigit(), "USER must be numeric uid:gid (runAsNonRoot)"
    return int(uid), int(gid)


def test_dockerfile_is_multi_stage_on_python_slim():
    stages = [s for s in _dockerfile_stages() if s]
    assert len(stages) >= 2
    base = _dockerfile_args().get("PYTHON_IMAGE", "")
    assert base == "python:3.11-slim"
    final_from = _instructions(_final_stage(), "FROM")[0]
    assert final_from in (base, "${PYTHON_IMAGE}")


def test_dockerfile_user_is_not_root():
    uid, gid = _dockerfile_user()
    assert uid >= 1000 and gid >= 1000


def test_dockerfile_runs_serve_on_the_probed_port():
    stage = _final_stage()
    assert json.loads(_instructions(stage, "ENTRYPOINT")[-1]) == ["liya-engine"]
    cmd = json.loads(_instructions(stage, "CMD")[-1])
    assert cmd == ["serve"]
    assert build_parser().parse_args(cmd).command == "serve"
    assert _instructions(stage, "EXPOSE") == ["50051"]
    assert _instructions(stage, "STOPSIGNAL") == ["SIGTERM"]
    env = _dockerfile_env(stage)
    assert env["LIYA_LISTEN_ADDRESS"] == "0.0.0.0:50051"
    assert set(env) & _settings_names() <= {"LIYA_LISTEN_ADDRESS"}
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert "liya-engine" in pyproject["project"]["scripts"]


def test_dockerfile_installs_the_project_without_dev_extras_or_compilers():
    runs = [args for stage in _dockerfile_stages() for args in _instructions(stage, "RUN")]
    installs = [r for r in runs if "pip install" in r and "--upgrade pip" not in r]
    assert installs, "no pip install of the project"
    for run in installs:
        assert "pip install ." in run, run
        assert "[" not in run, f"extras installed: {run}"
        assert " -e " not in run and "--editable" not in run, run
    final = "\n".join(args for _, args in _final_stage())
    for tool in ("build-essential", "gcc", "g++", "apt-get install", "pip install"):
        assert tool not in final, f"{tool} in the final stage"
    # The final stage takes only the built environment from the build stage.
    copies = _instructions(_final_stage(), "COPY")
    assert copies and all(c.startswith("--from=") for c in copies)


def test_dockerfile_copies_everything_the_package_is_built_from():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    needed = {"pyproject.toml", pyproject["project"]["readme"]}
    needed |= set(pyproject["tool"]["setuptools"]["packages"]["find"]["where"])
    # The server depends on the client distribution, which is built from clients/.
    client = tomllib.loads((ROOT / "clients" / "pyproject.toml").read_text(encoding="utf-8"))
    assert (
        f"{client['project']['name']}=={client['project']['version']}"
        in (pyproject["project"]["dependencies"])
    )
    needed.add("clients")
    copied: set[str] = set()
    for args in _instructions(_dockerfile_stages()[1], "COPY"):
        sources = args.split()[:-1]
        copied |= {s.rstrip("/") for s in sources}
    assert needed <= copied, f"not copied into the build stage: {sorted(needed - copied)}"
    ignored = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()}
    assert not needed & ignored, "a build input is in .dockerignore"


def test_dockerignore_keeps_local_state_out_of_the_context():
    ignored = {
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for entry in (".git", ".venv", ".dev", "node_modules", "tests", "bench/results"):
        assert entry in ignored, entry
    assert "**/*.db" in ignored or "*.db" in ignored
