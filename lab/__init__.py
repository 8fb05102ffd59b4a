"""netready lab: emulated copper and fibre site links in network namespaces.

See ``lab.netns`` (``Lab``, ``Profile``, ``PROFILES``, ``parse_profile``, ``cleanup_stale``)
and docs/lab.md.
"""
