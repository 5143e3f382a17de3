"""Integrations with the ecosystem around gevent applications (optional extras).

- :mod:`geventpool.contrib.gunicorn`: build pools in each gunicorn worker after
  the fork and close them gracefully when the worker exits.
- :mod:`geventpool.contrib.prometheus`: a Prometheus collector for the pools'
  stats and per-server health (needs ``prometheus_client``: the ``prometheus``
  extra).

Nothing here is imported by ``import geventpool``.
"""

from __future__ import annotations

__all__: list[str] = []
