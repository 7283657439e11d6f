"""The one comparison: (what belongs on a host, what the one read found) -> differences.

Pure: no I/O. ``target`` says what belongs on a host (from the deploy plan),
``facts`` what the host holds (from ``playbooks/module_utils/qsetup_read.py``),
``compare`` the differences with the fix deploy applies to each, ``broker`` the
broker's objects, ``removals`` what the inventory dropped.
"""
