"""prefect.yaml and the work-pool job templates, checked without a server."""

from __future__ import annotations

import json

import yaml

from flows.triggers import RETRAIN_REASON, retrain_trigger, shadow_won_trigger
from mlops.monitoring.policy import EVENTS
from mlops.settings import REPO_ROOT
from tests.support.e2e import MODEL

TEMPLATES = REPO_ROOT / "deployments" / "templates"


def test_prefect_yaml_trigger_is_the_retrain_trigger_of_flows_triggers() -> None:
    config = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    train = next(d for d in config["deployments"] if d["name"] == "train-model")
    (trigger,) = train["triggers"]
    expected = retrain_trigger(MODEL)

    assert set(trigger["expect"]) == expected.expect == set(EVENTS.values())
    assert trigger["match"] == expected.match.root
    assert trigger["parameters"] == expected.parameters
    assert trigger["parameters"]["reason"] == RETRAIN_REASON


def test_prefect_yaml_promotes_a_shadow_that_won_with_the_trigger_of_flows_triggers() -> None:
    from tasks.rollout import ROLLOUT_EVENTS

    config = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    promote = next(d for d in config["deployments"] if d["name"] == "promote-model")
    (trigger,) = promote["triggers"]
    expected = shadow_won_trigger(MODEL)
    assert set(trigger["expect"]) == expected.expect == {ROLLOUT_EVENTS["won"]}
    assert trigger["match"] == expected.match.root
    assert trigger["parameters"] == expected.parameters
    assert trigger["parameters"]["version"] == "{{ event.payload.version }}"


def test_gpu_templates_request_nvidia_gpus_with_the_cuda_environment() -> None:
    from prefect.utilities.templating import apply_values

    for kind in ("docker", "kubernetes"):
        template = json.loads((TEMPLATES / f"{kind}-gpu.json").read_text())
        defaults = {
            k: v["default"]
            for k, v in template["variables"]["properties"].items()
            if "default" in v
        }
        job = apply_values(template["job_configuration"], defaults)
        assert job["env"]["NVIDIA_VISIBLE_DEVICES"] == "all"
        assert job["env"]["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
        if kind == "kubernetes":
            pod = job["job_manifest"]["spec"]["template"]["spec"]
            assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
            assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
        else:
            (request,) = job["container_create_kwargs"]["device_requests"]
            assert request["capabilities"] == [["gpu"]]


def test_training_takes_no_gpu_slot_without_a_cuda_device() -> None:
    import contextlib

    import torch

    from tasks.training import gpu_slot

    assert isinstance(gpu_slot("cpu"), contextlib.nullcontext)
    if not torch.cuda.is_available():
        assert isinstance(gpu_slot("auto"), contextlib.nullcontext)


def test_tune_model_deploys_on_the_gpu_pool_with_parameters_its_flow_accepts() -> None:
    import inspect

    from flows.parameters import SearchSpec
    from flows.tuning import tune_model_flow

    config = yaml.safe_load((REPO_ROOT / "prefect.yaml").read_text())
    by_name = {d["name"]: d for d in config["deployments"]}
    tune, train = by_name["tune-model"], by_name["train-model"]
    module, name = tune["entrypoint"].split(":")

    assert (module, name) == ("flows/tuning.py", tune_model_flow.fn.__name__)
    assert tune_model_flow.name == "tune-model"
    assert tune["work_pool"] == train["work_pool"] and tune["work_pool"]["name"] == "gpu-pool"
    assert set(tune["parameters"]) <= set(inspect.signature(tune_model_flow.fn).parameters)
    assert tune["parameters"]["data"] == train["parameters"]["data"]
    assert SearchSpec(**tune["parameters"]["search"]).n_trials == 16
