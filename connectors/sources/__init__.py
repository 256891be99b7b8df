"""Sources: what puts ticket events on `ticket-events` (the help-desk webhook receiver, its
mappings, access rules and customer enrichment)."""
