"""The bundled ``xenserver`` plugin: Citrix XenServer / XCP-ng pools through the XenAPI SDK.

See docs/plugins/xenserver.md.
"""
