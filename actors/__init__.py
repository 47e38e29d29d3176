"""provider-fallback: an LLM-provider failover engine built from actors."""
