"""Metering: usage events from sessions to cost records, exactly once, never blocking audio.

- ``events``: the usage event the session emits; ``sink``: the ``UsageSink`` interface (+ a memory sink)
- ``codec``: its msgpack wire form; ``journal``: the producer's local spill file
- ``producer``: the non-blocking ``UsageSink`` (queue -> writer -> transport, journal on trouble)
- ``consumer``: Redis consumer group -> ledger (claim, dead letters, NOGROUP recovery, trimming, status)
- ``pricing``: units, price rules, Decimal arithmetic; ``prices``: the price table in the store
- ``ledger``: price and write a batch in one transaction; ``usage``: totals, tenant spend, reconciliation
- ``pipeline``: what a relay process runs, from its settings; ``cli``: ``realtime-relay meter``
- ``metrics``: the Prometheus metrics and a rate-limited log

See docs/metering.md.
"""
