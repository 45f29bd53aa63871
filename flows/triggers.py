"""The retrain trigger: monitor-model's events run the train-model deployment."""

from __future__ import annotations

from prefect.events import DeploymentEventTrigger

from mlops.monitoring.policy import EVENTS

# Rendered by the server when the trigger fires (Jinja, with the triggering `event` in context).
# A template with text outside its one `{{ }}` renders to a plain string, as `reason` expects.
RETRAIN_REASON = "{{ event.event }}: {{ event.payload.explanation }}"


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
