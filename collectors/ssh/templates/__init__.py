"""TextFSM templates for router CLI outputs (a package so *.textfsm ships as package data)."""
