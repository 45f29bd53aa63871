"""The docker and kubernetes job templates, rendered for a flow run by the workers' own code.

prefect-kubernetes and prefect-docker (the `pools` extra) turn a pool's base job template, the
deployment's job variables from prefect.yaml and a flow run's overrides into the Job manifest or
the container a worker submits, the way a worker does (`resolve_for_flow_run`). The tests stop
there: no server, cluster or Docker engine is contacted.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from mlops.settings import REPO_ROOT

TEMPLATES = REPO_ROOT / "deployments" / "templates"
API_URL = "http://prefect-server.mlops.svc:4200/api"
STORE = "/var/lib/mlops"
DOCKER_API = "1.47"
GPU = "nvidia.com/gpu"
RUN_ENV = {"MLOPS_REGISTRY_URL": "s3://mlops/registry"}

Template = dict[str, Any]
Breakage = Callable[[Template], object]


def load_template(name: str) -> Template:
    return json.loads((TEMPLATES / f"{name}.json").read_text())


def deployment_pool(name: str) -> dict[str, Any]:
    """Return a deployment's `work_pool` in prefect.yaml: its name and job variables."""
    config = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    deployment = next(d for d in config["deployments"] if d["name"] == name)
    return copy.deepcopy(deployment["work_pool"])


class OneRunServer:
    """The two answers a worker reads from the server to build a flow run's infrastructure."""

    def __init__(self, deployment: Any, flow: Any) -> None:
        self.deployment, self.flow = deployment, flow

    async def read_deployment(self, deployment_id: uuid.UUID) -> Any:
        assert deployment_id == self.deployment.id
        return self.deployment

    async def read_flow(self, flow_id: uuid.UUID) -> Any:
        assert flow_id == self.flow.id
        return self.flow


def resolve(pool_type: str, template: Template, deployment: str, run_vars: dict[str, Any]) -> Any:
    """Build a flow run's job configuration as a worker of a `pool_type` pool would."""
    from prefect.client.schemas.objects import Flow, FlowRun, WorkPool
    from prefect.client.schemas.responses import DeploymentResponse
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect_docker.worker import DockerWorkerJobConfiguration
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    configuration = {
        "docker": DockerWorkerJobConfiguration,
        "kubernetes": KubernetesWorkerJobConfiguration,
    }[pool_type]
    work_pool = deployment_pool(deployment)
    flow = Flow(id=uuid.uuid4(), name=deployment, labels={})
    prefect_deployment = DeploymentResponse(
        id=uuid.uuid4(),
        name=deployment,
        flow_id=flow.id,
        job_variables=work_pool.get("job_variables", {}),
        labels={},
    )
    run = FlowRun(
        id=uuid.uuid4(),
        name="sly-fox",
        flow_id=flow.id,
        deployment_id=prefect_deployment.id,
        job_variables=copy.deepcopy(run_vars),
    )
    pool = WorkPool(
        name=work_pool["name"],
        type=pool_type,
        base_job_template=template,
        default_queue_id=uuid.uuid4(),
    )
    server: Any = OneRunServer(prefect_deployment, flow)
    with temporary_settings(updates={PREFECT_API_URL: API_URL}):
        return asyncio.run(
            configuration.resolve_for_flow_run(
                run, client=server, work_pool=pool, worker_name="worker-1"
            )
        )


def kubernetes_job(template: Template, deployment: str, run_vars: dict[str, Any]) -> Any:
    """Return the Job manifest a kubernetes worker would create, and the run's configuration."""
    configuration = resolve("kubernetes", template, deployment, run_vars)
    return configuration.job_manifest, configuration


def docker_container(template: Template, deployment: str, run_vars: dict[str, Any]) -> Any:
    """Return docker-py's create arguments (host config built) a docker worker would send."""
    import docker
    from docker.models.containers import _create_container_args
    from prefect_docker.worker import DockerWorker

    configuration = resolve("docker", template, deployment, run_vars)
    # Only asked for extra hosts when the API is local; API_URL is not, so it is never contacted.
    engine = docker.DockerClient(base_url="unix:///nonexistent/docker.sock", version=DOCKER_API)
    settings = DockerWorker(work_pool_name="gpu-pool")._build_container_settings(
        engine, configuration
    )
    engine.close()
    return _create_container_args({**settings, "version": DOCKER_API}), configuration


def container_of(job: dict[str, Any]) -> dict[str, Any]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, str]:
    names = [item["name"] for item in container["env"]]
    assert len(names) == len(set(names)), f"duplicate variables in {names}"
    return {item["name"]: item["value"] for item in container["env"]}


def assert_shares_the_store(env: dict[str, str], mounts: dict[str, str]) -> str:
    """Check MLOPS_HOME names a mounted volume, not the run's own disk; return the volume."""
    assert env.get("MLOPS_HOME") == STORE, f"MLOPS_HOME is {env.get('MLOPS_HOME')!r}"
    assert STORE in mounts, f"nothing mounted at MLOPS_HOME {STORE}: mounts {mounts}"
    return mounts[STORE]


def assert_kubernetes_gpu_job(job: dict[str, Any], gpus: int) -> None:
    """Check the Job asks for `gpus` NVIDIA GPUs on GPU nodes and shares the store."""
    pod = job["spec"]["template"]["spec"]
    resources = container_of(job)["resources"]
    for kind in ("requests", "limits"):
        assert str(resources[kind].get(GPU)) == str(gpus), f"{kind}: {resources[kind]}"
    assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in pod.get("tolerations", [])
    assert pod.get("nodeSelector") == {"nvidia.com/gpu.present": "true"}
    assert_kubernetes_store(job)


def assert_kubernetes_store(job: dict[str, Any]) -> None:
    """Check MLOPS_HOME is the mounted PersistentVolumeClaim `mlops-home`."""
    container = container_of(job)
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    volume = volumes[assert_shares_the_store(env_of(container), mounts)]
    assert volume["persistentVolumeClaim"] == {"claimName": "mlops-home"}


def assert_docker_gpu_container(create: dict[str, Any]) -> None:
    """Check the container gets every GPU of the host and shares the store."""
    requests = create["host_config"].get("DeviceRequests", [])
    assert len(requests) == 1, f"device requests: {requests}"
    request = requests[0]
    assert request["Driver"] == "nvidia" and request["Count"] == -1, request
    assert request["Capabilities"] == [["gpu"]], request
    assert_docker_store(create)


def assert_docker_store(create: dict[str, Any]) -> None:
    """Check MLOPS_HOME is the named volume `mlops-home` (the container itself is removed)."""
    binds = create["host_config"].get("Binds", [])
    mounts = {target: source for source, target, *_ in (bind.split(":") for bind in binds)}
    assert assert_shares_the_store(create["environment"], mounts) == "mlops-home"


def test_kubernetes_gpu_job_requests_the_gpus_on_gpu_nodes_with_the_shared_store() -> None:
    run_vars = {"gpu_count": 2, "image": "registry.example/worker:1", "namespace": "mlops"}
    job, configuration = kubernetes_job(
        load_template("kubernetes-gpu"), "train-model", {**run_vars, "env": RUN_ENV}
    )
    pod = job["spec"]["template"]["spec"]
    container = container_of(job)
    env = env_of(container)

    assert_kubernetes_gpu_job(job, gpus=2)
    assert (job["apiVersion"], job["kind"], job["spec"]["backoffLimit"]) == ("batch/v1", "Job", 0)
    assert job["metadata"]["namespace"] == configuration.namespace == "mlops"
    assert job["metadata"]["generateName"] == "sly-fox-"
    assert job["metadata"]["labels"]["prefect.io/flow-run-name"] == "sly-fox"
    assert job["metadata"]["labels"]["prefect.io/work-pool-name"] == "gpu-pool"
    assert container["image"] == "registry.example/worker:1"
    assert container["args"] == ["prefect", "flow-run", "execute"]
    assert container["resources"]["requests"]["memory"] == "8Gi"
    # the template's defaults, prefect.yaml's train-model env, the run's env, the worker's own
    assert env["PREFECT__FLOW_RUN_ID"] == configuration.env["PREFECT__FLOW_RUN_ID"]
    assert env["PREFECT_API_URL"] == API_URL
    assert env["MLOPS_REGISTRY_URL"] == RUN_ENV["MLOPS_REGISTRY_URL"]
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    assert env["MLOPS_PREFER_GPU"] == "true"
    assert {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}} in pod["volumes"]
    json.dumps(job)  # the body the kubernetes client sends


def test_train_model_on_the_default_kubernetes_gpu_template_gets_one_gpu() -> None:
    job, _ = kubernetes_job(load_template("kubernetes-gpu"), "train-model", {})

    assert_kubernetes_gpu_job(job, gpus=1)


def test_kubernetes_cpu_job_asks_for_no_gpu_and_shares_the_store() -> None:
    job, _ = kubernetes_job(load_template("kubernetes-cpu"), "monitor-model", {})
    pod = job["spec"]["template"]["spec"]
    resources = container_of(job)["resources"]

    assert_kubernetes_store(job)
    assert GPU not in resources["requests"] and GPU not in resources["limits"]
    assert "tolerations" not in pod and "nodeSelector" not in pod
    assert "NVIDIA_VISIBLE_DEVICES" not in env_of(container_of(job))
    assert job["metadata"]["namespace"] == "default"
    assert container_of(job)["image"] == "mlops-bundle-worker:latest"


def test_docker_gpu_container_gets_the_gpus_and_the_shared_volume() -> None:
    create, configuration = docker_container(
        load_template("docker-gpu"), "train-model", {"env": RUN_ENV}
    )
    env = create["environment"]

    assert_docker_gpu_container(create)
    assert create["host_config"]["ShmSize"] == 2 * 1024**3
    assert create["host_config"]["AutoRemove"] is True
    assert create["command"] == "prefect flow-run execute"
    assert create["image"] == "mlops-bundle-worker:latest"
    assert env["PREFECT__FLOW_RUN_ID"] == configuration.env["PREFECT__FLOW_RUN_ID"]
    assert env["PREFECT_API_URL"] == API_URL
    assert env["MLOPS_REGISTRY_URL"] == RUN_ENV["MLOPS_REGISTRY_URL"]
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"


def test_docker_cpu_container_gets_no_gpu_and_the_shared_volume() -> None:
    create, _ = docker_container(load_template("docker-cpu"), "monitor-model", {})

    assert_docker_store(create)
    assert "DeviceRequests" not in create["host_config"]
    assert create["host_config"]["ShmSize"] == 1024**3
    assert "NVIDIA_VISIBLE_DEVICES" not in create["environment"]


@pytest.mark.parametrize("name", ["docker-cpu", "docker-gpu", "kubernetes-cpu", "kubernetes-gpu"])
def test_template_declares_every_variable_it_uses(name: str) -> None:
    from prefect.server.schemas.actions import validate_base_job_template

    validate_base_job_template(load_template(name))


def kube_container(t: Template) -> dict[str, Any]:
    return container_of(t["job_configuration"]["job_manifest"])


def defaults(t: Template, variable: str) -> Any:
    return t["variables"]["properties"][variable]["default"]


KUBERNETES_BREAKAGES: dict[str, Breakage] = {
    "gpu limit": lambda t: kube_container(t)["resources"]["limits"].pop(GPU),
    "gpu request": lambda t: kube_container(t)["resources"]["requests"].pop(GPU),
    "toleration": lambda t: t["variables"]["properties"]["tolerations"].pop("default"),
    "node selector": lambda t: t["job_configuration"]["job_manifest"]["spec"]["template"][
        "spec"
    ].pop("nodeSelector"),
    "MLOPS_HOME": lambda t: defaults(t, "env").pop("MLOPS_HOME"),
    "store mount": lambda t: kube_container(t)["volumeMounts"].pop(),
}
DOCKER_BREAKAGES: dict[str, Breakage] = {
    "device request": lambda t: defaults(t, "container_create_kwargs").pop("device_requests"),
    "MLOPS_HOME": lambda t: defaults(t, "env").pop("MLOPS_HOME"),
    "store volume": lambda t: t["variables"]["properties"]["volumes"].pop("default"),
}


@pytest.mark.parametrize("breakage", sorted(KUBERNETES_BREAKAGES))
def test_kubernetes_gpu_checks_catch_a_template_that_lost(breakage: str) -> None:
    template = load_template("kubernetes-gpu")
    KUBERNETES_BREAKAGES[breakage](template)
    job, _ = kubernetes_job(template, "train-model", {})

    with pytest.raises(AssertionError):
        assert_kubernetes_gpu_job(job, gpus=1)


@pytest.mark.parametrize("breakage", sorted(DOCKER_BREAKAGES))
def test_docker_gpu_checks_catch_a_template_that_lost(breakage: str) -> None:
    template = load_template("docker-gpu")
    DOCKER_BREAKAGES[breakage](template)
    create, _ = docker_container(template, "train-model", {})

    with pytest.raises(AssertionError):
        assert_docker_gpu_container(create)
