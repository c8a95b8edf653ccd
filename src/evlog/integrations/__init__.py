"""Framework integrations: one module each, imported by the app (``from evlog.integrations.flask import init_app``).

``import evlog`` never imports this package: each module imports its framework at its top, so it is loaded only
by apps that use that framework. Every module reaches the running client through ``_intake`` / ``_excepthook``
and binds the request's (or task's) context with ``_context``, never through the public package.
"""
