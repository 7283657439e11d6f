"""Pure: the validated inventory -> what belongs on each host, and the broker's objects.

Kept free of imports here: the playbooks' filters import ``qsetup.desired.names`` in every
Ansible worker process.
"""
