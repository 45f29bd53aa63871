"""Replay a labelled history under retraining policies, batch by batch, in event time."""
