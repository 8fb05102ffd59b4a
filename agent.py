#!/usr/bin/env python3
"""The netready site agent (same as the ``netready-agent`` command). Logic: netready/agent.py."""

from netready.cli.agent import main

if __name__ == "__main__":
    main()
