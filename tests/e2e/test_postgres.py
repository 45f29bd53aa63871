"""The Prefect server on a real PostgreSQL: deployments run through it, Optuna shares the database.

Debian's PostgreSQL runs on loopback for this module (skipped, saying how to install it, where it
cannot); the stack is the one of the other end-to-end tests with PREFECT_API_DATABASE_CONNECTION_URL
pointing at it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from tests.support.e2e import E2EStack, client_of, result_of, run_deployment, running_stack
from tests.support.postgres import Postgres, running_postgres, skip_without_postgres

pytestmark = pytest.mark.slow
OPTUNA_SCHEMA = "optuna"  # Prefect's tables (and its alembic_version) stay in `public`


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """A fresh PostgreSQL cluster with an empty database."""
    skip_without_postgres()
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="module")
def pg_stack(postgres: Postgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2EStack]:
    """The end-to-end stack with its Prefect server's database in PostgreSQL."""
    with running_stack(tmp_path_factory.mktemp("pg-home"), postgres.prefect_url) as e2e:
        yield e2e


def test_train_and_monitor_deployments_run_on_a_prefect_server_backed_by_postgresql(
    pg_stack: E2EStack, postgres: Postgres
) -> None:
    with client_of(pg_stack):
        trained = result_of(
            run_deployment("train-model/train-model", {"reason": "e2e: pg"}), pg_stack
        )
        now = dt.datetime.now(dt.UTC)
        window = {"start": (now - dt.timedelta(hours=1)).isoformat(), "end": now.isoformat()}
        monitor = run_deployment("monitor-model/monitor-model", {"window": window, "emit": False})
        monitored = result_of(monitor, pg_stack)

    assert trained["version"] == "v1" and trained["promoted"], trained["verdict"]
    # the champion it read from the registry, and no traffic served in the window
    assert monitored["served_rows"] == 0 and not monitored["retrain"]
    assert "v1 served no rows" in monitored["explanation"], monitored
    with postgres.connect() as connection:
        runs = connection.execute(
            "SELECT flow.name, flow_run.state_type"
            " FROM flow_run JOIN flow ON flow.id = flow_run.flow_id"
        ).fetchall()
    assert ("train-model", "COMPLETED") in runs and ("monitor-model", "COMPLETED") in runs, runs
    assert not list((pg_stack.home / "prefect").rglob("*.db")), "a SQLite database was created"


def test_tune_model_keeps_its_optuna_study_in_the_same_database(
    pg_stack: E2EStack, postgres: Postgres
) -> None:
    """tune-model, run by the gpu-pool worker, shares its study between two Dask processes."""
    import optuna

    with postgres.connect() as connection:
        connection.execute(f"CREATE SCHEMA {OPTUNA_SCHEMA}")
    storage = postgres.url("psycopg", options=f"-csearch_path={OPTUNA_SCHEMA}")
    search = {"n_trials": 4, "parallel": 2, "storage": storage, "study_name": "e2e-study"}
    with client_of(pg_stack):
        tuned = result_of(
            run_deployment("tune-model/tune-model", {"search": search}, timeout_s=600), pg_stack
        )

    trials = optuna.load_study(study_name="e2e-study", storage=storage).trials
    assert sorted(t.number for t in trials) == list(range(4))
    states = {t.state for t in trials}
    assert states <= {optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED}, states
    assert tuned["trials"]["complete"] >= 1 and tuned["version"], tuned
    with postgres.connect() as connection:
        (stored,) = connection.execute(f"SELECT count(*) FROM {OPTUNA_SCHEMA}.trials").fetchone()
        (tune_runs,) = connection.execute(
            "SELECT count(*) FROM flow_run JOIN flow ON flow.id = flow_run.flow_id"
            " WHERE flow.name = 'tune-model' AND flow_run.state_type = 'COMPLETED'"
        ).fetchone()
    assert stored == 4 and tune_runs == 1
    assert_server_healthy(pg_stack)


def assert_server_healthy(e2e: E2EStack) -> None:
    """The Prefect server still reads its database (its migrations' table left as it was)."""
    import httpx

    answer = httpx.post(f"{e2e.api}/flow_runs/count", json={}, timeout=10)
    assert answer.status_code == 200 and answer.json() > 0, answer.text
