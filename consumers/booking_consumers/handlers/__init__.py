"""One handler module per consumer; `registry.definition(name)` builds each ConsumerDef."""
