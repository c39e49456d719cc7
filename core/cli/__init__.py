"""``python -m core ...``: the same orchestration functions the pages call, as a stable command-line contract.

Subcommands: ``evaluate``, ``results``, ``checkpoints``, ``datasets`` (``core.cli.grid``), ``cost``
(``core.cli.cost``), ``train`` (``core.cli.train``), ``significance`` (``core.cli.significance``). With ``--json`` stdout carries only the JSON
document; progress bars and library chatter go to stderr. A user mistake (``LabError``) prints one
``error: ...`` line on stderr and exits 2.
"""
