"""The release step: export, verify, describe, register, gate and promote a candidate."""
