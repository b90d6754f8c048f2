"""Model catalog and routing: which provider and model serve a call."""
