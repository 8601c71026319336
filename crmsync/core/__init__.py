"""The bottom layer: what every process shares, importing nothing else of crmsync (nor webhooks, jobs,
sandbox). Settings (`settings`), every Redis key and TTL (`keys`), the event model and its types
(`events`), the app's queue, enqueue and the retry rule (`queue`), the only code on RQ's private
storage format (`rq_internals`), counters kept in Redis (`counters`), failure classes (`errors`),
redaction, the Redis connection and logging.
"""
