/*
 * geventpool.dbapi._speedups: the common case of a DB-API checkout, of a return that finds
 * nothing to clean, of psycopg2's watched cursor() and of its execute() of a known statement, in C.
 *
 * The same code as ConnectionPool.get() / put() (dbapi/pool.py), PooledConnection.cursor()
 * (dbapi/wrapper.py) and the watched cursor's execute() (dbapi/hygiene.py), without the
 * interpreter's per-bytecode cost.  Anything off the common case goes to that Python code (the
 * methods call it; the helpers return None or False to their Python caller); it behaves the same.
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

#include "../_slots.h"

#define FIELD(obj, off) (*(PyObject **)((char *)(obj) + (off)))

static int ready = 0;
static PyTypeObject *proxy_type = NULL;  /* PooledConnection */
static PyObject *take = NULL;            /* geventpool._speedups.take(table, pool) */
static PyObject *untouched = NULL, *queried = NULL;  /* the usage levels (small ints) */
static long queried_level = 0;
static PyObject *str_exit, *str_close, *str_name, *str_cursor, *str_cursor_factory, *str_gp_flag,
    *str_gp_guard, *str_conn, *str_active, *str_fast_cursor, *str_fast_checkout, *str_table,
    *str_wrapper, *str_proxies, *str_quiet_return, *str_snapshots, *str_driver,
    *str_clean_after_queries, *str_closed, *str_status, *str_get_transaction_status, *str_notices,
    *str_notifies, *str_gp_base_execute, *str_gp_slow_execute;

/* Set by install(): the Python code each C method falls back to, and what the methods look up. */
static PyObject *py_get = NULL, *py_put = NULL, *py_cursor = NULL;  /* ConnectionPool.get/put, PooledConnection.cursor */
static PyObject *watched_map = NULL;  /* hygiene.WATCHED_CURSORS: cursor class -> watched subclass */
static PyObject *verdicts = NULL;     /* hygiene._VERDICTS: statement -> may it change the session */
static PyObject *pg2_clean_func = NULL;  /* this module's pg2_clean, recognised by identity */
static PyObject *checkout_func = NULL;   /* this module's checkout: a pool's _fast_checkout when it serves */

/* How often each C path served a call (tests check that they do; see served()). */
enum { SERVED_GET, SERVED_PUT, SERVED_CURSOR, SERVED_EXECUTE, SERVED_CLEAN, SERVED_COUNT };
static unsigned long long served_counts[SERVED_COUNT];
static const char *served_names[SERVED_COUNT] = {"get", "put", "cursor", "execute", "clean"};

/* psycopg2's connection.status when ready (psycopg2.extensions.STATUS_READY; checked by the caller) */
#define PG2_STATUS_READY 1

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

/* Kill the proxy (its lease, connection and cursor list go) and return its lease: 1, or -1. */
static int
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
    return failed ? -1 : 1;
}

/* *out = int(v), and v released (v NULL: the error its maker set): 0, or -1 on error. */
static int
take_long(PyObject *v, long *out)
{
    if (v == NULL)
        return -1;
    *out = PyLong_AsLong(v);
    Py_DECREF(v);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

/* psycopg2: the connection is open, ready, out of any transaction, and its snapshot (if any)
 * recorded no notices or notifications: Psycopg2Driver.clean_after_queries.  1, 0, or -1 (error). */
static int
pg2_clean_impl(PyObject *conn, PyObject *snapshot)
{
    long closed, status, transaction;
    if (take_long(PyObject_GetAttr(conn, str_closed), &closed) < 0)
        return -1;
    if (closed != 0)
        return 0;
    if (take_long(PyObject_GetAttr(conn, str_status), &status) < 0)
        return -1;
    if (status != PG2_STATUS_READY)
        return 0;
    if (take_long(PyObject_CallMethodNoArgs(conn, str_get_transaction_status), &transaction) < 0)
        return -1;
    if (transaction != 0)
        return 0;
    if (snapshot != Py_None) {
        PyObject *names[2] = {str_notices, str_notifies};
        for (int i = 0; i < 2; i++) {
            PyObject *v = PyObject_GetAttr(snapshot, names[i]);
            if (v == NULL)
                return -1;
            int empty = is_false(v);
            Py_DECREF(v);
            if (empty <= 0)
                return empty;  /* -1: error; 0: something to empty */
        }
    }
    served_counts[SERVED_CLEAN]++;
    return 1;
}

/* pg2_clean(conn, snapshot): Psycopg2Driver.clean_after_queries in C (see pg2_clean_impl). */
static PyObject *
dbapi_pg2_clean(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "pg2_clean(conn, snapshot)");
        return NULL;
    }
    int clean = pg2_clean_impl(args[0], args[1]);
    if (clean < 0)
        return NULL;
    return Py_NewRef(clean ? Py_True : Py_False);
}

/* ConnectionPool.put()'s returns that do no I/O, for a pool with no reset hook (the caller
 * checks): an untouched proxy; or one whose borrower only ran statements that cannot change the
 * session through client-side cursors, on a connection ``clean(conn, snapshots.get(id(conn)))``
 * calls clean.  1: returned; 0: the general path (nothing was changed); -1: error. */
static int
quiet_return_impl(PyObject *proxy, PyObject *clean, PyObject *snapshots)
{
    if (!ready || !PyObject_TypeCheck(proxy, proxy_type) || !PyDict_CheckExact(snapshots))
        return 0;
    PyObject *lease = FIELD(proxy, p_lease), *use = FIELD(proxy, p_use);
    if (lease == NULL || lease == Py_None || use == NULL)
        return 0;
    if (use == untouched)
        return finish_quietly(proxy, lease, 0);
    if (use != queried)
        return 0;
    PyObject *sql = FIELD(proxy, p_sql), *cursors = FIELD(proxy, p_cursors), *base = FIELD(proxy, p_base);
    if (sql == NULL || !PyList_CheckExact(sql) || PyList_GET_SIZE(sql) != 2 || cursors == NULL
        || !PyList_CheckExact(cursors) || base == NULL || base == Py_None)
        return 0;
    for (Py_ssize_t i = 0; i < 2; i++) {
        int f = is_false(PyList_GET_ITEM(sql, i));
        if (f <= 0)
            return f;
    }
    PyObject *active = PyObject_GetAttr(lease, str_active);
    if (active == NULL)
        return -1;
    int inactive = is_false(active);
    Py_DECREF(active);
    if (inactive != 0)
        return inactive < 0 ? -1 : 0;  /* the general path raises */
    PyObject *key = PyLong_FromVoidPtr(base);
    if (key == NULL)
        return -1;
    PyObject *snapshot = PyDict_GetItemWithError(snapshots, key);  /* borrowed */
    Py_DECREF(key);
    if (snapshot == NULL) {
        if (PyErr_Occurred())
            return -1;
        snapshot = Py_None;
    }
    /* held across the calls below: they run Python code, which may drop the proxy's references */
    Py_INCREF(snapshot);
    Py_INCREF(lease);
    Py_INCREF(base);
    Py_INCREF(cursors);
    int result = -1, verdict;
    if (clean == pg2_clean_func)
        verdict = pg2_clean_impl(base, snapshot);
    else {
        PyObject *v = PyObject_CallFunctionObjArgs(clean, base, snapshot, NULL);
        if (v == NULL)
            verdict = -1;
        else {
            int f = is_false(v);
            Py_DECREF(v);
            verdict = f < 0 ? -1 : !f;
        }
    }
    if (verdict <= 0) {
        result = verdict;
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
            result = 0;
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
        result = 0;
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

/* quiet_return(proxy, clean, snapshots): see quiet_return_impl.  True: returned; False: the
 * general path. */
static PyObject *
dbapi_quiet_return(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "quiet_return(proxy, clean, snapshots)");
        return NULL;
    }
    int r = quiet_return_impl(args[0], args[1], args[2]);
    if (r < 0)
        return NULL;
    return Py_NewRef(r ? Py_True : Py_False);
}

/* PooledConnection.cursor() with no arguments for a psycopg2 pool that watches statements and
 * guards nothing: a cursor of the watched subclass of the connection's cursor_factory (or
 * ``fallback``), looked up in hygiene.WATCHED_CURSORS.  New reference; None: the general path
 * (the proxy is dead, or the subclass is not made yet). */
static PyObject *
watched_cursor_impl(PyObject *fallback, PyObject *proxy)
{
    PyObject *watched = watched_map;
    if (!ready || watched == NULL || !PyObject_TypeCheck(proxy, proxy_type))
        Py_RETURN_NONE;
    PyObject *base = FIELD(proxy, p_base), *use = FIELD(proxy, p_use);
    if (base == NULL || base == Py_None || use == NULL || !PyLong_CheckExact(use))
        Py_RETURN_NONE;
    long level = PyLong_AsLong(use);
    if (level == -1 && PyErr_Occurred())
        return NULL;
    PyObject *method = _PyType_Lookup(Py_TYPE(base), str_cursor);  /* borrowed */
    if (method == NULL || !Py_IS_TYPE(method, &PyMethodDescr_Type))
        Py_RETURN_NONE;  /* a connection class with a cursor() of its own: the general path */
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
    /* conn.cursor(None, cls): no keyword dict to build (cursor() is the driver's own C method:
     * checked above) */
    PyObject *call[3] = {base, Py_None, cls};
    cursor = PyObject_VectorcallMethod(str_cursor, call, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
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

/* func(self, *args, **kwargs) from a vectorcall whose args leave self out. */
static PyObject *
call_with_self(PyObject *func, PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    Py_ssize_t total = nargs + (kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0);
    PyObject *small[8], **stack = small;
    if (total + 1 > 8) {
        stack = PyMem_Malloc((size_t)(total + 1) * sizeof(PyObject *));
        if (stack == NULL)
            return PyErr_NoMemory();
    }
    stack[0] = self;
    for (Py_ssize_t i = 0; i < total; i++)
        stack[i + 1] = args[i];
    PyObject *r = PyObject_Vectorcall(func, stack, (size_t)nargs + 1, kwnames);
    if (stack != small)
        PyMem_Free(stack);
    return r;
}

/* -- the methods: the pool's get() and put(), the proxy's cursor(), the watched execute() ------ */

static int
not_installed(void)
{
    PyErr_SetString(PyExc_RuntimeError, "geventpool.dbapi._speedups: install() was not called");
    return -1;
}

/* Plain attributes of an object read from its __dict__ (skipping the type's descriptors, which
 * the pool's classes do not define for these names): new references in out[], 1; 0 if one is
 * missing or the object has no dict (the caller takes the general path); -1 on error. */
static int
read_attrs(PyObject *obj, PyObject *const *names, int n, PyObject **out)
{
    PyObject **dictptr = _PyObject_GetDictPtr(obj);
    PyObject *dict = dictptr != NULL ? *dictptr : NULL;
    if (dict == NULL || !PyDict_CheckExact(dict))
        return 0;
    Py_INCREF(dict);
    int i;
    for (i = 0; i < n; i++) {
        PyObject *v = PyDict_GetItemWithError(dict, names[i]);  /* borrowed */
        if (v == NULL)
            break;
        out[i] = Py_NewRef(v);
    }
    Py_DECREF(dict);
    if (i == n)
        return 1;
    for (int j = 0; j < i; j++)
        Py_DECREF(out[j]);
    return PyErr_Occurred() ? -1 : 0;
}

/* The pool's get(timeout=None), bound to it (ConnectionPool.__init__): the C checkout when it
 * serves, else ConnectionPool.get. */
static PyObject *
pool_get(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (py_get == NULL)
        return not_installed(), NULL;
    if (ready && kwnames == NULL && (nargs == 1 || (nargs == 2 && args[1] == Py_None))) {
        PyObject *pool = args[0], *attrs[4];  /* _fast_checkout, _table, _wrapper, _proxies */
        PyObject *names[4] = {str_fast_checkout, str_table, str_wrapper, str_proxies};
        int found = read_attrs(pool, names, 4, attrs);
        if (found < 0)
            return NULL;
        if (found) {
            PyObject *result;
            if (attrs[0] != checkout_func || !can_make(attrs[2], attrs[3]))
                result = Py_NewRef(Py_None);
            else {
                PyObject *call[2] = {attrs[1], pool};
                PyObject *lease = PyObject_Vectorcall(take, call, 2, NULL);
                if (lease == NULL || lease == Py_None)
                    result = lease;
                else {
                    result = make_proxy(lease, attrs[2], attrs[3]);
                    Py_DECREF(lease);
                }
            }
            for (int i = 0; i < 4; i++)
                Py_DECREF(attrs[i]);
            if (result == NULL)
                return NULL;
            if (result != Py_None) {
                served_counts[SERVED_GET]++;
                return result;
            }
            Py_DECREF(result);
        }
    }
    return PyObject_Vectorcall(py_get, args, (size_t)nargs, kwnames);
}

/* The pool's put(conn, cleanup=...), bound to it: a quiet return of one of its proxies when
 * there is nothing to clean (see quiet_return_impl), else ConnectionPool.put. */
static PyObject *
pool_put(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (py_put == NULL)
        return not_installed(), NULL;
    if (ready && kwnames == NULL && nargs == 2) {
        PyObject *pool = args[0], *conn = args[1], *attrs[4];  /* _wrapper, _quiet_return, driver, _snapshots */
        PyObject *names[4] = {str_wrapper, str_quiet_return, str_driver, str_snapshots};
        int found = read_attrs(pool, names, 4, attrs);
        if (found < 0)
            return NULL;
        if (found) {
            int r = 0;
            if ((PyObject *)Py_TYPE(conn) == attrs[0] && attrs[1] == Py_True) {
                PyObject *clean = NULL;
                found = read_attrs(attrs[2], &str_clean_after_queries, 1, &clean);
                if (found == 0)  /* the class's method (not the C check bound in __init__) */
                    clean = PyObject_GetAttr(attrs[2], str_clean_after_queries);
                if (found < 0 || clean == NULL)
                    r = -1;
                else {
                    Py_INCREF(conn);  /* held: the return runs Python code */
                    r = quiet_return_impl(conn, clean, attrs[3]);
                    Py_DECREF(conn);
                    Py_DECREF(clean);
                }
            }
            for (int i = 0; i < 4; i++)
                Py_DECREF(attrs[i]);
            if (r < 0)
                return NULL;
            if (r) {
                served_counts[SERVED_PUT]++;
                Py_RETURN_NONE;
            }
        }
    }
    return PyObject_Vectorcall(py_put, args, (size_t)nargs, kwnames);
}

/* PooledConnection.cursor(*args, **kwargs) on the pool's own proxy class when the driver has a
 * watched cursor to give (the class attribute ``_fast_cursor``: the default cursor class): with
 * no arguments, watched_cursor_impl; anything else, PooledConnection.cursor. */
static PyObject *
proxy_cursor(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (py_cursor == NULL)
        return not_installed(), NULL;
    if (ready && nargs == 0 && kwnames == NULL) {
        PyObject *fallback = _PyType_Lookup(Py_TYPE(self), str_fast_cursor);  /* borrowed */
        if (fallback != NULL && PyType_Check(fallback)) {
            Py_INCREF(fallback);
            PyObject *cursor = watched_cursor_impl(fallback, self);
            Py_DECREF(fallback);
            if (cursor == NULL)
                return NULL;
            if (cursor != Py_None) {
                served_counts[SERVED_CURSOR]++;
                return cursor;
            }
            Py_DECREF(cursor);
        }
    }
    return call_with_self(py_cursor, self, args, nargs, kwnames);
}

/* execute(query, vars=None) of a watched psycopg2 cursor class: a str statement already judged
 * unable to change the session goes straight to the class's own execute (``_gp_base_execute``);
 * anything else to the Python method (``_gp_slow_execute``), which judges, guards and flags. */
static PyObject *
watched_execute(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (verdicts == NULL)
        return not_installed(), NULL;
    if (ready && kwnames == NULL && (nargs == 1 || nargs == 2) && PyUnicode_CheckExact(args[0])) {
        PyObject *verdict = PyDict_GetItemWithError(verdicts, args[0]);  /* borrowed */
        if (verdict == NULL && PyErr_Occurred())
            return NULL;
        if (verdict == Py_False) {
            PyObject *base = _PyType_Lookup(Py_TYPE(self), str_gp_base_execute);  /* borrowed */
            if (base != NULL) {
                Py_INCREF(base);
                PyObject *r = call_with_self(base, self, args, nargs, NULL);
                Py_DECREF(base);
                if (r != NULL)
                    served_counts[SERVED_EXECUTE]++;
                return r;
            }
        }
    }
    PyObject *slow = _PyType_Lookup(Py_TYPE(self), str_gp_slow_execute);  /* borrowed */
    if (slow == NULL) {
        PyErr_Format(PyExc_TypeError, "%s has no _gp_slow_execute: not a watched cursor class",
                     Py_TYPE(self)->tp_name);
        return NULL;
    }
    Py_INCREF(slow);
    PyObject *r = call_with_self(slow, self, args, nargs, kwnames);
    Py_DECREF(slow);
    return r;
}

static PyMethodDef proxy_cursor_def = {
    "cursor", (PyCFunction)(void (*)(void))proxy_cursor, METH_FASTCALL | METH_KEYWORDS,
    "cursor(*args, **kwargs)\n--\n\n"
    "The driver's cursor(); closed when the connection goes back to the pool (the C fast path of\n"
    "PooledConnection.cursor: a watched psycopg2 cursor with no arguments)."};

static PyMethodDef watched_execute_def = {
    "execute", (PyCFunction)(void (*)(void))watched_execute, METH_FASTCALL | METH_KEYWORDS,
    "execute(query, vars=None)\n--\n\n"
    "The cursor's execute(), after a look at whether the statement may change the session."};

/* cursor_method(): PooledConnection.cursor's C fast path, a method of PooledConnection. */
static PyObject *
dbapi_cursor_method(PyObject *module, PyObject *unused)
{
    if (!ready) {
        PyErr_SetString(PyExc_RuntimeError, "cursor_method(): setup() first");
        return NULL;
    }
    return PyDescr_NewMethod(proxy_type, &proxy_cursor_def);
}

/* execute_method(cls): the watched execute() as a method of cursor class ``cls``. */
static PyObject *
dbapi_execute_method(PyObject *module, PyObject *cls)
{
    if (!PyType_Check(cls)) {
        PyErr_SetString(PyExc_TypeError, "execute_method(cls): cls must be a class");
        return NULL;
    }
    return PyDescr_NewMethod((PyTypeObject *)cls, &watched_execute_def);
}

/* served(): how often each C path served a call, by name. */
static PyObject *
dbapi_served(PyObject *module, PyObject *unused)
{
    PyObject *d = PyDict_New();
    if (d == NULL)
        return NULL;
    for (int i = 0; i < SERVED_COUNT; i++) {
        PyObject *n = PyLong_FromUnsignedLongLong(served_counts[i]);
        if (n == NULL || PyDict_SetItemString(d, served_names[i], n) < 0) {
            Py_XDECREF(n);
            Py_DECREF(d);
            return NULL;
        }
        Py_DECREF(n);
    }
    return d;
}

/* -- setup ------------------------------------------------------------------------------------ */

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
    if (gp_offset_of(pt, "_lease", &p_lease) || gp_offset_of(pt, "_base", &p_base)
        || gp_offset_of(pt, "_cursors", &p_cursors) || gp_offset_of(pt, "_use", &p_use)
        || gp_offset_of(pt, "_sql", &p_sql))
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

/* install(get, put, cursor, watched, verdicts): the Python code the C methods fall back to
 * (ConnectionPool.get, ConnectionPool.put, PooledConnection.cursor) and the two tables they read
 * (hygiene.WATCHED_CURSORS and the statement verdicts). */
static PyObject *
dbapi_install(PyObject *module, PyObject *args)
{
    PyObject *get, *put, *cursor, *watched, *judged;
    if (!PyArg_ParseTuple(args, "OOOO!O!:install", &get, &put, &cursor, &PyDict_Type, &watched,
                          &PyDict_Type, &judged))
        return NULL;
    if (!PyCallable_Check(get) || !PyCallable_Check(put) || !PyCallable_Check(cursor)) {
        PyErr_SetString(PyExc_TypeError, "install(): get, put and cursor must be callable");
        return NULL;
    }
    if (!PyDict_CheckExact(watched) || !PyDict_CheckExact(judged)) {
        PyErr_SetString(PyExc_TypeError, "install(): watched and verdicts must be plain dicts");
        return NULL;
    }
    Py_XSETREF(py_get, Py_NewRef(get));
    Py_XSETREF(py_put, Py_NewRef(put));
    Py_XSETREF(py_cursor, Py_NewRef(cursor));
    Py_XSETREF(watched_map, Py_NewRef(watched));
    Py_XSETREF(verdicts, Py_NewRef(judged));
    Py_RETURN_NONE;
}

static PyMethodDef dbapi_methods[] = {
    {"setup", dbapi_setup, METH_VARARGS,
     "setup(PooledConnection, take, UNTOUCHED, QUERIED): find the fields; raise if the layout differs."},
    {"install", dbapi_install, METH_VARARGS,
     "install(get, put, cursor, watched, verdicts): what the C methods fall back to and read."},
    {"checkout", (PyCFunction)(void (*)(void))dbapi_checkout, METH_FASTCALL,
     "checkout(table, pool, wrapper, proxies): the fast path of ConnectionPool.get(), or None."},
    {"wrap", (PyCFunction)(void (*)(void))dbapi_wrap, METH_FASTCALL,
     "wrap(lease, wrapper, proxies): the proxy of a lease checked out by the general path, or None."},
    {"quiet_return", (PyCFunction)(void (*)(void))dbapi_quiet_return, METH_FASTCALL,
     "quiet_return(proxy, clean, snapshots): a put() with nothing to clean (True), or False."},
    {"pg2_clean", (PyCFunction)(void (*)(void))dbapi_pg2_clean, METH_FASTCALL,
     "pg2_clean(conn, snapshot): Psycopg2Driver.clean_after_queries in C."},
    {"get", (PyCFunction)(void (*)(void))pool_get, METH_FASTCALL | METH_KEYWORDS,
     "get($module, pool, /, timeout=None)\n--\n\n"
     "Check out a connection (a PooledConnection); give it back with put().  The C fast path of\n"
     "ConnectionPool.get: see its documentation."},
    {"put", (PyCFunction)(void (*)(void))pool_put, METH_FASTCALL | METH_KEYWORDS,
     "put($module, pool, conn, /, cleanup=...)\n--\n\n"
     "Return a connection.  The C fast path of ConnectionPool.put: see its documentation."},
    {"cursor_method", dbapi_cursor_method, METH_NOARGS,
     "cursor_method(): PooledConnection.cursor's C fast path, as a method of PooledConnection."},
    {"execute_method", dbapi_execute_method, METH_O,
     "execute_method(cls): a watched cursor's execute() in C, as a method of cursor class cls."},
    {"served", dbapi_served, METH_NOARGS, "served(): how often each C path served a call, by name."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef dbapi_module = {
    PyModuleDef_HEAD_INIT, "geventpool.dbapi._speedups",
    "The DB-API pool's get(), put(), proxy cursor() and watched execute() in C (see geventpool/dbapi/_fast.py).",
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
    INTERN(str_active, "active");
    INTERN(str_fast_cursor, "_fast_cursor");
    INTERN(str_fast_checkout, "_fast_checkout");
    INTERN(str_table, "_table");
    INTERN(str_wrapper, "_wrapper");
    INTERN(str_proxies, "_proxies");
    INTERN(str_quiet_return, "_quiet_return");
    INTERN(str_snapshots, "_snapshots");
    INTERN(str_driver, "driver");
    INTERN(str_clean_after_queries, "clean_after_queries");
    INTERN(str_closed, "closed");
    INTERN(str_status, "status");
    INTERN(str_get_transaction_status, "get_transaction_status");
    INTERN(str_notices, "notices");
    INTERN(str_notifies, "notifies");
    INTERN(str_gp_base_execute, "_gp_base_execute");
    INTERN(str_gp_slow_execute, "_gp_slow_execute");
#undef INTERN
    PyObject *module = PyModule_Create(&dbapi_module);
    if (module == NULL)
        return NULL;
    /* kept to recognise it in a driver: a return then checks the connection without a call */
    pg2_clean_func = PyObject_GetAttrString(module, "pg2_clean");
    checkout_func = PyObject_GetAttrString(module, "checkout");
    if (pg2_clean_func == NULL || checkout_func == NULL) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
