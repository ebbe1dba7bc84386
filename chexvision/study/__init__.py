"""Studies: one head-to-head comparison (models x seeds) as one command.

`spec` reads and validates the study file, `state` keeps the study's durable record, `driver` dispatches within the
backend's limits and continues runs stopped at their time budget, `finish` fetches, evaluates and publishes a
completed run, `report` writes the head-to-head report. Torch loads only in `finish` and `report`.
"""
