"""The inference plane: completion calls routed to providers."""
