"""Build shim: all metadata lives in setup.cfg.

The two extensions, ``geventpool._speedups`` (the core's checkout and
Lease) and ``geventpool.dbapi._speedups`` (the DB-API pool's get, put, cursor
and watched execute), are optional: without a C compiler the install
goes on and the pure-Python code (which behaves the same) is used.  See
geventpool/_accel.py.
"""

from setuptools import Extension, setup

#: the header both include (where a class's __slots__ fields live)
SLOTS = "geventpool/_slots.h"

setup(
    ext_modules=[
        Extension("geventpool._speedups", ["geventpool/_speedups.c"], depends=[SLOTS], optional=True),
        Extension(
            "geventpool.dbapi._speedups", ["geventpool/dbapi/_speedups.c"], depends=[SLOTS], optional=True
        ),
    ],
)
