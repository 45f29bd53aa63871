"""Export a trained pipeline to one self-contained ONNX file taking raw feature columns.

Numeric columns are float32 inputs (NaN for null); categorical columns are string inputs looked up
in the graph by an `ai.onnx.ml.LabelEncoder` whose default is the out-of-vocabulary index.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import onnx
import torch
from onnx import TensorProto, helper

from mlops.contract.spec import Contract
from mlops.training.features import OOV_INDEX, Preprocessor
from mlops.training.quiet import quiet_libraries
from mlops.training.train import TrainedModel

log = logging.getLogger(__name__)
ML_DOMAIN = "ai.onnx.ml"
ML_OPSET = 3
INDEX_SUFFIX = "__index"


def output_name(task: str) -> str:
    """Return the graph's output name for a task."""
    return "prediction" if task == "regression" else "probabilities"


def export_onnx(model: TrainedModel, contract: Contract, path: str | Path) -> Path:
    """Write the model as a single ONNX file with all preprocessing inside the graph."""
    prep = model.preprocessor
    pipeline = model.pipeline()
    numeric = [s.name for s in prep.numeric]
    categorical = [v.name for v in prep.categorical]
    n = 4
    example = tuple(torch.zeros(n, dtype=torch.float32) for _ in numeric) + tuple(
        torch.zeros(n, dtype=torch.long) for _ in categorical
    )
    input_names = numeric + [f"{c}{INDEX_SUFFIX}" for c in categorical]
    batch = torch.export.Dim("batch", min=1)
    with quiet_libraries():
        program = torch.onnx.export(
            pipeline,
            example,
            input_names=input_names,
            output_names=[output_name(prep.target.task)],
            dynamic_shapes=(tuple({0: batch} for _ in example),),
            external_data=False,
            dynamo=True,
            verbose=False,
        )
    assert program is not None
    proto = program.model_proto
    _add_vocabulary_lookups(proto, prep, contract.feature_names)
    _add_metadata(proto, contract, prep, model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save_model(proto, str(path), save_as_external_data=False)
    return path


def _add_vocabulary_lookups(
    proto: onnx.ModelProto, prep: Preprocessor, order: tuple[str, ...]
) -> None:
    graph = proto.graph
    by_name = {i.name: i for i in graph.input}
    lookups = []
    for vocab in prep.categorical:
        index_name = f"{vocab.name}{INDEX_SUFFIX}"
        graph.input.remove(by_name[index_name])
        lookups.append(
            helper.make_node(
                "LabelEncoder",
                inputs=[vocab.name],
                outputs=[index_name],
                domain=ML_DOMAIN,
                name=f"vocabulary_{vocab.name}",
                keys_strings=list(vocab.values) or ["\x00"],
                values_int64s=list(range(1, len(vocab.values) + 1)) or [OOV_INDEX],
                default_int64=OOV_INDEX,
            )
        )
        graph.input.append(helper.make_tensor_value_info(vocab.name, TensorProto.STRING, ["batch"]))
    old_nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(lookups + old_nodes)
    for opset in proto.opset_import:
        if opset.domain == ML_DOMAIN:
            opset.version = max(opset.version, ML_OPSET)
            break
    else:
        proto.opset_import.append(helper.make_opsetid(ML_DOMAIN, ML_OPSET))
    # The contract promises its column order as the input order (the network sees numeric first).
    inputs = sorted(graph.input, key=lambda i: order.index(i.name))
    del graph.input[:]
    graph.input.extend(inputs)


def _add_metadata(
    proto: onnx.ModelProto, contract: Contract, prep: Preprocessor, model: TrainedModel
) -> None:
    threshold = model.decision_threshold
    meta = {
        "contract_name": contract.name,
        "contract_fingerprint": contract.fingerprint,
        "task": prep.target.task,
        "classes": json.dumps(list(prep.target.classes or [])),
        "decision_threshold": str(threshold),
        "features": json.dumps(list(contract.feature_names)),
    }
    for key, value in meta.items():
        proto.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))
    proto.producer_name = "mlops-bundle"
    proto.doc_string = (
        f"{contract.name}: raw feature columns in, {output_name(prep.target.task)} out"
    )


def read_metadata(path_or_bytes: str | Path | bytes) -> dict[str, Any]:
    """Return the metadata properties stored in an ONNX file."""
    proto = (
        onnx.load_from_string(path_or_bytes)
        if isinstance(path_or_bytes, bytes)
        else onnx.load(str(path_or_bytes))
    )
    return {p.key: p.value for p in proto.metadata_props}
