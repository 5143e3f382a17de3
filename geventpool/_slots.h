/*
 * Shared by geventpool/_speedups.c and geventpool/dbapi/_speedups.c: where a Python class's
 * __slots__ field lives in its instances, so that C and Python code read and write the same
 * storage.
 */
#ifndef GEVENTPOOL_SLOTS_H
#define GEVENTPOOL_SLOTS_H

#include <Python.h>
#include <structmember.h>

/* The offset of plain __slots__ field ``name`` of ``type`` in *out: 0, or -1 with TypeError if
 * the attribute is not one (a property, a read-only member, another kind of member). */
static inline int
gp_offset_of(PyTypeObject *type, const char *name, Py_ssize_t *out)
{
    PyObject *descr = PyObject_GetAttrString((PyObject *)type, name);
    if (descr == NULL)
        return -1;
    if (!Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not a __slots__ field", type->tp_name, name);
        Py_DECREF(descr);
        return -1;
    }
    PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
    Py_DECREF(descr);
    if (member->type != T_OBJECT_EX || (member->flags & READONLY)) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not a plain __slots__ field", type->tp_name, name);
        return -1;
    }
    *out = member->offset;
    return 0;
}

#endif
