"""Provider adapters: one module per upstream API behind ``base.ProviderAdapter``."""
