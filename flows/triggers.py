"""Deployment triggers: monitor-model's events run train-model (retrain) and promote-model."""

from __future__ import annotations

from prefect.events import DeploymentEventTrigger

from mlops.monitoring.policy import EVENTS

# Rendered by the server when the trigger fires (Jinja, with the triggering `event` in context).
# A template with text outside its one `{{ }}` renders to a plain string, as `reason` expects.
RETRAIN_REASON = "{{ event.event }}: {{ event.payload.explanation }}"
SHADOW_WON_EVENT = "mlops.model.shadow-won"
SHADOW_VERSION = "{{ event.payload.version }}"  # one expression alone: renders to the value


def retrain_trigger(model_name: str = "card-fraud") -> DeploymentEventTrigger:
    """Return a trigger that runs train-model for `model_name` on its drift or decay events.

    The run gets `model_name` and a `reason` naming the event and the monitor's explanation;
    every other parameter keeps the deployment's default.
    """
    return DeploymentEventTrigger(
        name=f"retrain-{model_name}",
        description=f"Retrain {model_name} when monitor-model reports drift or a performance drop",
        expect=set(EVENTS.values()),
        match={"prefect.resource.id": f"mlops.model.{model_name}"},
        posture="Reactive",
        threshold=1,
        parameters={"model_name": model_name, "reason": RETRAIN_REASON},
    )


def shadow_won_trigger(model_name: str = "card-fraud") -> DeploymentEventTrigger:
    """Return a trigger that runs promote-model for the shadow that beat `model_name`'s champion.

    The run gets the shadow's version from the event and the verdict as its `reason`; it checks
    the version again before moving the alias (and pauses for approval when the deployment's
    `approval` default is on).
    """
    return DeploymentEventTrigger(
        name=f"promote-shadow-{model_name}",
        description=f"Promote the shadow of {model_name} that monitor-model found better",
        expect={SHADOW_WON_EVENT},
        match={"prefect.resource.id": f"mlops.model.{model_name}"},
        posture="Reactive",
        threshold=1,
        parameters={
            "version": SHADOW_VERSION,
            "model_name": model_name,
            "reason": RETRAIN_REASON,
            "actor": "monitor-model",
            "strategy": "direct",
        },
    )
