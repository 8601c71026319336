"""The web process's HTTP server: gunicorn's settings and hooks (`gunicorn_conf`), its worker
(`buffering_worker`) and its access log (`access_log`).

Apart from crmsync.web, and importing none of it: gunicorn's master imports these modules before
gunicorn_conf has set PROMETHEUS_MULTIPROC_DIR, and importing crmsync.web (and so the webhooks'
metrics) there would load prometheus-client in its single-process mode for every worker.
"""
