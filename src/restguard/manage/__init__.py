"""The service layer: what an operator can do to restguard's records, shared by the command
line (``restguard.cli``) and the admin REST API (``restguard.admin.api``) so they cannot drift.

Each module owns one kind of record. Functions take the store and a time, validate their
input, and return plain JSON-ready data; they raise ``ManageError`` subclasses, which each
adapter translates (a message and exit status 1; a status code and the contract's JSON).
"""
