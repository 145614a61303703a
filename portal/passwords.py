"""How passwords are stored: Argon2id at the parameters OWASP's Password Storage Cheat Sheet gives
as its first choice (19 MiB of memory, 2 passes, 1 lane).

Django's Argon2 hasher defaults to 100 MiB and 8 lanes, and its scrypt hasher (what the portal
used before) spends 0.2 s of one core on a sign-in here; at the first-of-the-month peak, when
clients open the portal by the hundred, that cost alone filled both cores (bench/clients.py,
bench/README.md "200 concurrent clients"). At these parameters a sign-in costs a tenth of that,
with a hash OWASP rates as strong. A password stored by an earlier hasher (scrypt, PBKDF2) still
signs in and is stored again with this one at that sign-in (Django's `must_update`)."""
from __future__ import annotations

from django.contrib.auth.hashers import Argon2PasswordHasher


class Argon2idPasswordHasher(Argon2PasswordHasher):
    # Same algorithm name as Django's: the parameters live in each stored hash, so a hash made
    # with other parameters is still checked, and re-made with these at its next sign-in.
    time_cost = 2
    memory_cost = 19 * 1024  # KiB
    parallelism = 1
