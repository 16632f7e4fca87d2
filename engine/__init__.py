"""Everything that acts: lifecycle loader, spool, uploader, service, CLI."""
