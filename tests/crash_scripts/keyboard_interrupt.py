"""Ctrl-C is a way of stopping, not a failure: nothing is recorded by default."""

import evlog

evlog.configure()
evlog.log_event("started")
raise KeyboardInterrupt
