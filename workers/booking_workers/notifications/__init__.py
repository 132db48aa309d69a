"""Patient notifications: templates, quiet hours, channel adapters and the delivery service."""
