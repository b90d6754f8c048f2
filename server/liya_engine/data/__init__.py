"""Packaged data files: ``catalog.json``, the model catalog (prices, tiers,
intents) that ``routing.catalog`` reads and operators may replace."""
