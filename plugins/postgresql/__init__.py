"""The bundled ``postgresql`` application plugin: base backups, WAL archiving, PITR, dumps."""
