/*
 * geventpool.dbapi._speedups: the common case of a DB-API checkout, of a return that finds
 * nothing to clean, and of psycopg2's watched cursor(), in C.
 *
 * The same code as ConnectionPool.get() / put() (dbapi/pool.py) and PooledConnection.cursor()
 * (dbapi/wrapper.py), without the interpreter's per-bytecode cost.  Anything off the common case
 * returns None (or False) and the Python code runs instead; it behaves the same.
 *
 * PooledConnection stays a Python class with __slots__: setup() finds the offsets of its fields
 * from their member descriptors, so Python code and this code read and write the same storage.
 * The core's checkout is reached through the function setup() is given (geventpool._speedups.take):
 * this module knows the core only by its Python face.
 *
 * Not subinterpreter-safe (module state is static): geventpool is gevent's, and gevent runs in the
 * main interpreter.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#define FIELD(obj, off) (*(PyObject **)((char *)(obj) + (off)))

static int ready = 0;
static PyTypeObject *proxy_type = NULL;  /* PooledConnection */
static PyObject *take = NULL;            /* geventpool._speedups.take(table, pool) */
static PyObject *untouched = NULL, *queried = NULL;  /* the usage levels (small ints) */
static long queried_level = 0;
static PyObject *str_exit, *str_close, *str_name, *str_cursor, *str_cursor_factory, *str_gp_flag,
    *str_gp_guard, *str_conn, *kw_cursor_factory;

/* PooledConnection fields */
static Py_ssize_t p_lease, p_base, p_cursors, p_use, p_sql;

/* Replace a field, handing the old value to *old (released by the caller, later). */
static inline void
swap_field(PyObject *obj, Py_ssize_t off, PyObject *value, PyObject **old)
{
    PyObject **p = (PyObject **)((char *)obj + off);
    *old = *p;
    *p = value;
}

/* lease.__exit__(None, None, None): the core's return (its own fast path, or pool._return). */
static int
exit_lease(PyObject *lease)
{
    PyObject *args[4] = {lease, Py_None, Py_None, Py_None};
    PyObject *r = PyObject_VectorcallMethod(str_exit, args, 4 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* A new proxy of class ``wrapper`` for ``lease`` (PooledConnection.__init__, inlined), registered
 * weakly in ``proxies`` under id(conn).  New reference; on error NULL, and the lease is given back. */
static PyObject *
make_proxy(PyObject *lease, PyObject *wrapper, PyObject *proxies)
{
    PyObject *conn = PyObject_GetAttr(lease, str_conn), *proxy = NULL, *ref = NULL, *key = NULL;
    if (conn == NULL)
        goto error;
    proxy = ((PyTypeObject *)wrapper)->tp_alloc((PyTypeObject *)wrapper, 0);
    if (proxy == NULL)
        goto error;
    FIELD(proxy, p_lease) = Py_NewRef(lease);
    FIELD(proxy, p_base) = Py_NewRef(conn);
    FIELD(proxy, p_cursors) = Py_NewRef(Py_None);
    FIELD(proxy, p_use) = Py_NewRef(untouched);
    ref = PyWeakref_NewRef(proxy, NULL);
    key = PyLong_FromVoidPtr(conn);
    if (ref == NULL || key == NULL || PyDict_SetItem(proxies, key, ref) < 0)
        goto error;
    Py_DECREF(ref);
    Py_DECREF(key);
    Py_DECREF(conn);
    return proxy;

error:
    Py_XDECREF(ref);
    Py_XDECREF(key);
    Py_XDECREF(conn);
    if (proxy != NULL) {  /* the proxy dies unused */
        PyObject *old[2];
        swap_field(proxy, p_lease, Py_NewRef(Py_None), &old[0]);
        swap_field(proxy, p_base, Py_NewRef(Py_None), &old[1]);
        Py_XDECREF(old[0]);
        Py_XDECREF(old[1]);
        Py_DECREF(proxy);
    }
    {   /* give the connection back, keeping the first error */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        if (exit_lease(lease) < 0)
            PyErr_WriteUnraisable(lease);
        PyErr_Restore(type, value, tb);
    }
    return NULL;
}

static int
can_make(PyObject *wrapper, PyObject *proxies)
{
    return ready && PyType_Check(wrapper) && PyType_IsSubtype((PyTypeObject *)wrapper, proxy_type)
           && PyDict_CheckExact(proxies);
}

/* checkout(table, pool, wrapper, proxies): ConnectionPool.get() with no timeout when the core's
 * fast checkout serves it: a new proxy (see make_proxy).  None: the general path. */
static PyObject *
dbapi_checkout(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "checkout(table, pool, wrapper, proxies)");
        return NULL;
    }
    if (!can_make(args[2], args[3]))
        Py_RETURN_NONE;
    PyObject *lease = PyObject_Vectorcall(take, args, 2, NULL);
    if (lease == NULL || lease == Py_None)
        return lease;
    PyObject *proxy = make_proxy(lease, args[2], args[3]);
    Py_DECREF(lease);
    return proxy;
}

/* wrap(lease, wrapper, proxies): the proxy of a lease the general path checked out (see
 * make_proxy); None if ``wrapper`` is not a proxy class this code knows. */
static PyObject *
dbapi_wrap(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "wrap(lease, wrapper, proxies)");
        return NULL;
    }
    if (!can_make(args[1], args[2]))
        Py_RETURN_NONE;
    return make_proxy(args[0], args[1], args[2]);
}

static int
is_false(PyObject *v)
{
    if (v == Py_False || v == Py_None)
        return 1;
    if (v == Py_True || v == NULL)
        return 0;
    int t = PyObject_IsTrue(v);
    return t < 0 ? -1 : !t;
}

/* Kill the proxy (its lease, connection and cursor list go) and return its lease. */
static PyObject *
finish_quietly(PyObject *proxy, PyObject *lease, int with_cursors)
{
    PyObject *old[3] = {NULL, NULL, NULL};
    Py_INCREF(lease);
    if (with_cursors)
        swap_field(proxy, p_cursors, Py_NewRef(Py_None), &old[0]);
    swap_field(proxy, p_lease, Py_NewRef(Py_None), &old[1]);
    swap_field(proxy, p_base, Py_NewRef(Py_None), &old[2]);
    for (int i = 0; i < 3; i++)
        Py_XDECREF(old[i]);
    int failed = exit_lease(lease);
    Py_DECREF(lease);
    if (failed)
        return NULL;
    Py_RETURN_TRUE;
}

/* quiet_return(proxy, clean, snapshots): ConnectionPool.put()'s returns that do no I/O, for a pool
 * with no reset hook (the caller checks): an untouched proxy; or one whose borrower only ran
 * statements that cannot change the session through client-side cursors, on a connection
 * ``clean(conn, snapshots.get(id(conn)))`` calls clean.  True: returned; False: the general path. */
static PyObject *
dbapi_quiet_return(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "quiet_return(proxy, clean, snapshots)");
        return NULL;
    }
    PyObject *proxy = args[0], *clean = args[1], *snapshots = args[2];
    if (!ready || !PyObject_TypeCheck(proxy, proxy_type) || !PyDict_CheckExact(snapshots))
        Py_RETURN_FALSE;
    PyObject *lease = FIELD(proxy, p_lease), *use = FIELD(proxy, p_use);
    if (lease == NULL || lease == Py_None || use == NULL)
        Py_RETURN_FALSE;
    if (use == untouched)
        return finish_quietly(proxy, lease, 0);
    if (use != queried)
        Py_RETURN_FALSE;
    PyObject *sql = FIELD(proxy, p_sql), *cursors = FIELD(proxy, p_cursors), *base = FIELD(proxy, p_base);
    if (sql == NULL || !PyList_CheckExact(sql) || PyList_GET_SIZE(sql) != 2 || cursors == NULL
        || !PyList_CheckExact(cursors) || base == NULL || base == Py_None)
        Py_RETURN_FALSE;
    for (Py_ssize_t i = 0; i < 2; i++) {
        int f = is_false(PyList_GET_ITEM(sql, i));
        if (f <= 0)
            return f < 0 ? NULL : Py_NewRef(Py_False);
    }
    PyObject *active = PyObject_GetAttrString(lease, "active");
    if (active == NULL)
        return NULL;
    int inactive = is_false(active);
    Py_DECREF(active);
    if (inactive != 0)
        return inactive < 0 ? NULL : Py_NewRef(Py_False);  /* the general path raises */
    PyObject *key = PyLong_FromVoidPtr(base);
    if (key == NULL)
        return NULL;
    PyObject *snapshot = PyDict_GetItemWithError(snapshots, key);  /* borrowed */
    Py_DECREF(key);
    if (snapshot == NULL) {
        if (PyErr_Occurred())
            return NULL;
        snapshot = Py_None;
    }
    /* held across the calls below: they run Python code, which may drop the proxy's references */
    Py_INCREF(snapshot);
    Py_INCREF(lease);
    Py_INCREF(base);
    Py_INCREF(cursors);
    PyObject *verdict = PyObject_CallFunctionObjArgs(clean, base, snapshot, NULL);
    PyObject *result = NULL;
    if (verdict == NULL)
        goto done;
    int unclean = is_false(verdict);
    Py_DECREF(verdict);
    if (unclean != 0) {
        result = unclean < 0 ? NULL : Py_NewRef(Py_False);
        goto done;
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(cursors); i++) {  /* a named cursor: closing it is I/O */
        PyObject *cursor = Py_NewRef(PyList_GET_ITEM(cursors, i));
        PyObject *name = PyObject_GetAttr(cursor, str_name);
        Py_DECREF(cursor);
        if (name == NULL)
            goto done;
        int named = name != Py_None;
        Py_DECREF(name);
        if (named) {
            result = Py_NewRef(Py_False);
            goto done;
        }
    }
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(cursors); i++) {  /* client-side: no I/O */
        PyObject *cursor = Py_NewRef(PyList_GET_ITEM(cursors, i));
        PyObject *r = PyObject_CallMethodNoArgs(cursor, str_close);
        Py_DECREF(cursor);
        if (r == NULL)
            goto done;
        Py_DECREF(r);
    }
    if (FIELD(proxy, p_lease) != lease) {  /* returned meanwhile (by a cursor's close?): general path */
        result = Py_NewRef(Py_False);
        goto done;
    }
    result = finish_quietly(proxy, lease, 1);
done:
    Py_DECREF(snapshot);
    Py_DECREF(lease);
    Py_DECREF(base);
    Py_DECREF(cursors);
    return result;
}

/* watched_cursor(watched, default, proxy): PooledConnection.cursor() with no arguments for a
 * psycopg2 pool that watches statements and guards nothing: a cursor of the watched subclass of
 * the connection's cursor_factory (or ``default``), looked up in ``watched``.  None: the general
 * path (the proxy is dead, or the subclass is not made yet). */
static PyObject *
dbapi_watched_cursor(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "watched_cursor(watched, default, proxy)");
        return NULL;
    }
    PyObject *watched = args[0], *fallback = args[1], *proxy = args[2];
    if (!ready || !PyDict_CheckExact(watched) || !PyObject_TypeCheck(proxy, proxy_type))
        Py_RETURN_NONE;
    PyObject *base = FIELD(proxy, p_base), *use = FIELD(proxy, p_use);
    if (base == NULL || base == Py_None || use == NULL || !PyLong_CheckExact(use))
        Py_RETURN_NONE;
    long level = PyLong_AsLong(use);
    if (level == -1 && PyErr_Occurred())
        return NULL;
    Py_INCREF(base);  /* held: the calls below run Python code */
    PyObject *factory = PyObject_GetAttr(base, str_cursor_factory), *cls = NULL, *cursor = NULL, *flag = NULL;
    if (factory == NULL)
        goto error;
    int unset = is_false(factory);
    if (unset < 0)
        goto error;
    cls = PyDict_GetItemWithError(watched, unset ? fallback : factory);  /* borrowed */
    if (cls == NULL) {
        if (PyErr_Occurred())
            goto error;
        Py_DECREF(factory);
        Py_DECREF(base);
        Py_RETURN_NONE;  /* no watched subclass made yet: the general path makes it */
    }
    Py_INCREF(cls);
    if (level < queried_level) {
        PyObject *old;
        swap_field(proxy, p_use, Py_NewRef(queried), &old);
        Py_XDECREF(old);
    }
    PyObject *call[2] = {base, cls};
    cursor = PyObject_VectorcallMethod(str_cursor, call, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET, kw_cursor_factory);
    if (cursor == NULL)
        goto error;
    /* as PooledConnection.cursor(): the first cursor brings the flag list, the others share it */
    PyObject *cursors = FIELD(proxy, p_cursors);
    int first = cursors == NULL || cursors == Py_None;
    PyObject *sql = first ? NULL : FIELD(proxy, p_sql);
    if (sql != NULL && sql != Py_None)
        flag = Py_NewRef(sql);
    else {
        flag = PyList_New(2);
        if (flag == NULL)
            goto error;
        PyList_SET_ITEM(flag, 0, Py_NewRef(Py_False));
        PyList_SET_ITEM(flag, 1, Py_NewRef(Py_False));
    }
    if (PyObject_SetAttr(cursor, str_gp_flag, flag) < 0 || PyObject_SetAttr(cursor, str_gp_guard, Py_None) < 0)
        goto error;
    cursors = FIELD(proxy, p_cursors);  /* read again: setting the attributes ran code */
    if (cursors == NULL || cursors == Py_None) {
        PyObject *list = PyList_New(1);
        if (list == NULL)
            goto error;
        PyList_SET_ITEM(list, 0, Py_NewRef(cursor));
        PyObject *old[2];
        swap_field(proxy, p_sql, Py_NewRef(flag), &old[0]);
        swap_field(proxy, p_cursors, list, &old[1]);
        Py_XDECREF(old[0]);
        Py_XDECREF(old[1]);
    }
    else if (PyList_Append(cursors, cursor) < 0)
        goto error;
    Py_DECREF(flag);
    Py_DECREF(cls);
    Py_DECREF(factory);
    Py_DECREF(base);
    return cursor;

error:
    Py_XDECREF(flag);
    Py_XDECREF(cursor);
    Py_XDECREF(cls);
    Py_XDECREF(factory);
    Py_DECREF(base);
    return NULL;
}

/* -- setup ------------------------------------------------------------------------------------ */

static int
offset_of(PyTypeObject *type, const char *name, Py_ssize_t *out)
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

static PyObject *
dbapi_setup(PyObject *module, PyObject *args)
{
    PyObject *cls, *take_func, *level_untouched, *level_queried;
    if (!PyArg_ParseTuple(args, "O!OO!O!:setup", &PyType_Type, &cls, &take_func, &PyLong_Type,
                          &level_untouched, &PyLong_Type, &level_queried))
        return NULL;
    PyTypeObject *pt = (PyTypeObject *)cls;
    if (!PyCallable_Check(take_func)) {
        PyErr_SetString(PyExc_TypeError, "setup(): take is not callable");
        return NULL;
    }
    if (offset_of(pt, "_lease", &p_lease) || offset_of(pt, "_base", &p_base)
        || offset_of(pt, "_cursors", &p_cursors) || offset_of(pt, "_use", &p_use)
        || offset_of(pt, "_sql", &p_sql))
        return NULL;
    long level = PyLong_AsLong(level_queried);
    if (level == -1 && PyErr_Occurred())
        return NULL;
    Py_XSETREF(proxy_type, (PyTypeObject *)Py_NewRef(cls));
    Py_XSETREF(take, Py_NewRef(take_func));
    Py_XSETREF(untouched, Py_NewRef(level_untouched));
    Py_XSETREF(queried, Py_NewRef(level_queried));
    queried_level = level;
    ready = 1;
    Py_RETURN_NONE;
}

static PyMethodDef dbapi_methods[] = {
    {"setup", dbapi_setup, METH_VARARGS,
     "setup(PooledConnection, take, UNTOUCHED, QUERIED): find the fields; raise if the layout differs."},
    {"checkout", (PyCFunction)(void (*)(void))dbapi_checkout, METH_FASTCALL,
     "checkout(table, pool, wrapper, proxies): the fast path of ConnectionPool.get(), or None."},
    {"wrap", (PyCFunction)(void (*)(void))dbapi_wrap, METH_FASTCALL,
     "wrap(lease, wrapper, proxies): the proxy of a lease checked out by the general path, or None."},
    {"quiet_return", (PyCFunction)(void (*)(void))dbapi_quiet_return, METH_FASTCALL,
     "quiet_return(proxy, clean, snapshots): a put() with nothing to clean (True), or False."},
    {"watched_cursor", (PyCFunction)(void (*)(void))dbapi_watched_cursor, METH_FASTCALL,
     "watched_cursor(watched, default, proxy): psycopg2's watched cursor() with no arguments, or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef dbapi_module = {
    PyModuleDef_HEAD_INIT, "geventpool.dbapi._speedups",
    "The DB-API pool's checkout, quiet return and watched cursor in C (see geventpool/dbapi/_fast.py).",
    -1, dbapi_methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return NULL
    INTERN(str_exit, "__exit__");
    INTERN(str_close, "close");
    INTERN(str_name, "name");
    INTERN(str_cursor, "cursor");
    INTERN(str_cursor_factory, "cursor_factory");
    INTERN(str_gp_flag, "_gp_flag");
    INTERN(str_gp_guard, "_gp_guard");
    INTERN(str_conn, "conn");
#undef INTERN
    if ((kw_cursor_factory = PyTuple_Pack(1, str_cursor_factory)) == NULL)
        return NULL;
    return PyModule_Create(&dbapi_module);
}
