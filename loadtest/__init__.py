"""Arbor's Locust suite: the default mix (users.py), load shapes (shapes.py), the data file
(data.py, from `arbor seed --export`), cursors to read on (reading.py) and the SLO gate
(gate.py, pure; hooks.py, Locust's glue). Entry point: loadtest/locustfile.py."""
