"""Model catalog and routing: which provider and model serve a call.

``catalog`` reads the model catalog (prices, tiers, intents); ``prices``
resolves a model name to the tenant's or the catalog's price; ``router``
applies precedence, overrides and strategies. Domain code: pure functions over the
config model, no I/O beyond reading the catalog file at start.
"""
