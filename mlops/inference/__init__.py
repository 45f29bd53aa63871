"""Inference: raw rows -> ONNX feed -> outputs, the one path serving, scoring and the gate use."""
