"""Build shim: all metadata lives in setup.cfg.

The one extension, ``geventpool._speedups``, is optional: without a C
compiler the install goes on and the pure-Python code (which behaves the
same) is used.  See geventpool/_accel.py.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("geventpool._speedups", ["geventpool/_speedups.c"], optional=True),
    ],
)
