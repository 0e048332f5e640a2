"""The file source plugin: backs up and restores a host's files, folders and links."""
