"""MariaDB / MySQL application plugin: physical backups, binlog archiving, PITR, dumps."""
