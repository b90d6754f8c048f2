"""The usage ledger and the monthly budget, as domain code.

``ledger`` aggregates every provider call in memory and flushes the daily
rollup through the ``ports.UsageStore`` that ``liya_engine.storage``
implements; ``budget`` is the check made before each call; ``listing`` serves
``ListDailyUsage`` (dates, paging, month-to-date). No grpc or SQL here.
"""
