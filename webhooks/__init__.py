"""The receiving side: Flask blueprints that turn signed CRM webhooks into queued jobs.

It never imports the applying side (`jobs`): both meet only in `crmsync.core` (the event model and
the queue). `crmsync.web.create_app` assembles these blueprints into the app.
"""
