"""netready lab: emulated copper and fibre site links in network namespaces, and the demo.

See ``netready.lab.netns`` (``Lab``, ``Profile``, ``PROFILES``, ``parse_profile``,
``cleanup_stale``; its parts are in ``profiles``, ``topology``, ``shaping``, ``shell``,
``state``), ``netready.lab.manage`` (what ``netready lab`` runs), ``netready.lab.demo``
(``make demo``; its emulated routers in ``netready.lab.routers``) and docs/lab.md.
"""
