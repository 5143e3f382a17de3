"""gunicorn settings for the example app: gevent workers, pools built per worker and closed on exit.

    gunicorn -c gunicorn.conf.py app:application            # add --preload to import the app once

Settings come from the environment where it makes sense (``BIND``, ``WEB_CONCURRENCY``,
``GRACEFUL_TIMEOUT``); the hooks are geventpool's (see geventpool.contrib.gunicorn).
"""

from __future__ import annotations

import os

from geventpool.contrib.gunicorn import on_exit, post_worker_init, when_ready, worker_exit

__all__ = ["on_exit", "post_worker_init", "when_ready", "worker_exit"]

bind = os.environ.get("BIND", "127.0.0.1:8000")
worker_class = "gevent"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_connections = 1000
# pools are closed in worker_exit within what is left of this after the requests drained
graceful_timeout = int(os.environ.get("GRACEFUL_TIMEOUT", "10"))
timeout = 30
keepalive = 2
