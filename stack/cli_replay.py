"""`mlops replay`: send the records of a CSV/Parquet file to a running prediction API."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from mlops.settings import get_settings

console = Console()


def replay(
    file: Annotated[str, typer.Argument(help="CSV/Parquet file or folder, local or URL.")],
    url: Annotated[str, typer.Option(help="Prediction API base URL.")] = "http://127.0.0.1:3000",
    batch: Annotated[int, typer.Option(min=1, help="Records per request.")] = 256,
    token: Annotated[
        str | None, typer.Option(help="Bearer token (default: MLOPS_API_TOKEN).")
    ] = None,
    contract: Annotated[str | None, typer.Option(help="Contract YAML.")] = None,
) -> None:
    """POST a file's records to /predict in batches and count the answers by status.

    The contract's target column and the columns it does not know are dropped first.
    """
    from mlops.contract.loader import load_contract
    from mlops.data.sources import read_frame
    from stack.replay import frame_records, post_records, request_columns

    settings = get_settings()
    spec = load_contract(contract or settings.contract)
    text = [c.name for c in spec.columns if c.dtype == "string"]
    frame, files = read_frame(file, string_columns=text)
    frame, dropped = request_columns(frame, spec)
    if dropped:
        console.print(f"dropped columns: {', '.join(dropped)}")
    token = token or settings.api_token
    headers = {"Authorization": f"Bearer {token}"} if token else None
    try:
        counts = post_records(url, frame_records(frame), batch=batch, headers=headers)
    except ConnectionError as exc:
        raise ConnectionError(f"{exc} (is `mlops serve` running?)") from exc
    console.print(f"sent {len(frame)} records from {len(files)} file(s) to {url}/predict")
    for status, (answers, records) in sorted(counts.items()):
        console.print(f"  {status}: {answers} answers ({records} records)")
    refused = sum(answers for status, (answers, _) in counts.items() if status >= 400)
    if refused:
        total = sum(answers for answers, _ in counts.values())
        raise RuntimeError(f"{refused} of {total} requests to {url}/predict were refused")
